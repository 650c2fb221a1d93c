"""The Textual faces: the review screen and its helpers."""
