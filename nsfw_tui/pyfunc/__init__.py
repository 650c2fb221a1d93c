"""The MLflow pyfunc: what `mlflow models serve` runs, carried inside the model's code folder."""
