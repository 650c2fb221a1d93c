"""The folder tree: every folder under the root with its image, NSFW and label counts."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ...core.review import Review
from .image_list import printable

# What each count beside a folder is: the model's NSFW calls are not labels, and say so.
LEGEND = "img · model NSFW · labels"


def _label(name: str, counts: tuple[int, int, int], room: int) -> Text:
    """The folder's name and its counts in ``room`` cells: the name is cut, never the counts."""
    images, nsfw, labelled = counts
    tail = Text()
    tail.append(f"  {images}", style="bold")
    tail.append(f" · {nsfw}", style="#e5484d" if nsfw else "dim")
    tail.append(f" · {labelled}", style="dim")
    shown = printable(name)
    space = room - tail.cell_len
    if room > 0 and len(shown) > space:
        shown = shown[: max(1, space - 1)] + "…"
    text = Text(shown)  # plain Text: a folder called "[bold]" stays literal
    text.append_text(tail)
    return text


def _depth(node: TreeNode[str]) -> int:
    depth = 0
    while node.parent is not None:
        node, depth = node.parent, depth + 1
    return depth


class FolderTree(Tree[str]):
    """Node data is the folder's path relative to the root ("" for the root)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("…", data="", **kwargs)
        self.show_root = True
        self.guide_depth = 2
        self.border_title = LEGEND
        self._folder_nodes: dict[str, TreeNode[str]] = {}
        self._review: Review | None = None

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
        self._review = review
        counts = review.folder_counts()
        width = self.scrollable_content_region.width
        for folder, node in self._folder_nodes.items():
            name = (
                (review.root.name or str(review.root)) if not folder else folder.rpartition("/")[2]
            )
            # the cells left of the label: the guides, and the fold icon of a folder with more
            room = width - _depth(node) * self.guide_depth - (2 if node.allow_expand else 0)
            node.set_label(_label(name, counts.get(folder, (0, 0, 0)), room if width else 0))

    def on_resize(self) -> None:
        if self._review is not None:
            self.update_counts(self._review)
