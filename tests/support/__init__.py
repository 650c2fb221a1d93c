"""Code the tests share (image generators, fake scorers, harnesses); holds no tests itself."""
