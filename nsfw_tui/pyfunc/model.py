"""The MLflow model itself (models from code): loads the ONNX artifact, predicts on strings.

MLflow runs this file when it loads the model, after putting the model's own code folder
first on sys.path: everything imported below comes from that folder.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel

from nsfw_tui.core.preprocess import Preprocessing
from nsfw_tui.core.scorers import OnnxScorer
from nsfw_tui.pyfunc.scoring import Settings, decode_pool, predict, root_from_env

ARTIFACT = "onnx_model"
"""The artifact key of the self-describing ONNX file."""
INLINE_ENV = "NSFW_TUI_PYFUNC_DECODE_INLINE"
"""Set by the process that logs a model while MLflow checks the input example in it: decode
in the calling thread there. Decode processes spawned from that process would re-import its
main script (`nsfw-tui`) with the model's code folder first on sys.path, which lacks the CLI."""


class NsfwModel(PythonModel):
    """``predict(["path/or/data-uri", ...])`` -> one ``{probability, prediction, class}`` each."""

    def load_context(self, context: Any) -> None:
        config = dict(context.model_config or {})
        pre = Preprocessing.from_dict(config["preprocessing"])
        self.settings = Settings(
            threshold=float(config["threshold"]),
            use_draft=bool(config.get("use_draft", True)),
            max_frames=int(config.get("max_frames", 8)),
            batch_size=int(config.get("batch_size", 16)),
            decode_workers=0
            if os.environ.get(INLINE_ENV)
            else int(config.get("decode_workers", 2)),
            decode_timeout_s=float(config.get("decode_timeout_s", 20.0)),
        )
        self.scorer = OnnxScorer(
            str(config.get("model_id", "nsfw-tui")),
            context.artifacts[ARTIFACT],
            pre,
            output=str(config["output"]),
            default_threshold=self.settings.threshold,
        )
        # started on the first request: a worker whose decode hangs or crashes costs one item
        self.pool = decode_pool(self.scorer, self.settings)

    def predict(
        self, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        # the root is read per call, so a server's environment decides, not the logging one's
        return predict(model_input, self.scorer, self.settings, root_from_env(), self.pool)


mlflow.models.set_model(NsfwModel())
