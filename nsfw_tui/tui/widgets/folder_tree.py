"""The folder tree: every folder under the root with its image, NSFW and label counts."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ...core.review import Review
from .image_list import printable


def _label(name: str, counts: tuple[int, int, int]) -> Text:
    images, nsfw, labelled = counts
    text = Text(printable(name))  # plain Text: a folder called "[bold]" stays literal
    text.append(f"  {images}", style="bold")
    text.append(f" · {nsfw} nsfw", style="#e5484d" if nsfw else "dim")
    text.append(f" · {labelled} lab", style="dim")
    return text


class FolderTree(Tree[str]):
    """Node data is the folder's path relative to the root ("" for the root)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("…", data="", **kwargs)
        self.show_root = True
        self.guide_depth = 2
        self._folder_nodes: dict[str, TreeNode[str]] = {}

    def build(self, review: Review) -> None:
        self.clear()
        self.root.data = ""
        self._folder_nodes = {"": self.root}
        for folder in review.folders():
            if not folder:
                continue
            parent = folder.rpartition("/")[0]
            node = self._folder_nodes.get(parent, self.root)
            self._folder_nodes[folder] = node.add(folder.rpartition("/")[2], data=folder)
        self.root.expand_all()
        self.update_counts(review)

    def update_counts(self, review: Review) -> None:
        counts = review.folder_counts()
        for folder, node in self._folder_nodes.items():
            name = (
                (review.root.name or str(review.root)) if not folder else folder.rpartition("/")[2]
            )
            node.set_label(_label(name, counts.get(folder, (0, 0, 0))))
