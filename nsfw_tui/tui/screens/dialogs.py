"""Small modal screens: help, confirmation, model picker."""

from __future__ import annotations

from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

KEYS = [
    ("up/down, j/k", "move"),
    ("PgUp/PgDn, Home/End", "move by page / to the ends"),
    ("n", "label NSFW and move on"),
    ("s", "label SFW and move on"),
    ("N / S", "label every image in the view (asks first)"),
    ("u", "clear the label"),
    ("z", "undo the last label change (repeatable)"),
    ("space", "reveal / blur the preview"),
    ("g", "grid of thumbnails / list (frame colour: the model's call; ✔ the label)"),
    ("in the grid", "arrows or hjkl move, x marks, N / S label the marked, enter opens large"),
    # long lines wrap under their own column (test_help_wraps_a_long_description_under_itself)
    (
        "f",
        "filter: all, unlabelled, disagreements, predicted NSFW, uncertain, errors, duplicates, "
        "suspect",
    ),
    ("o", "cycle sort: name, probability, uncertainty, useful"),
    ("+ / -", "raise / lower the threshold"),
    ("/", "search by file name (Esc clears)"),
    ("m", "pick the active model"),
    ("r", "rescan the folder and score what is new"),
    ("i", "stats: confusion matrix, recall, precision, AUROC"),
    ("t", "training: fine-tune on your labels (runs in the background)"),
    ("A", "adapt now: a small head fitted on your labels in seconds"),
    ("tab", "move between the folder tree and the list"),
    ("?", "this help"),
    ("q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        # a grid, so that a description too long for the dialog wraps under itself
        keys = Table.grid(padding=(0, 2))
        keys.add_column(no_wrap=True, style="bold #f5a524")
        keys.add_column()
        for key, what in KEYS:
            keys.add_row(key, what)
        text = Text()
        text.append("\nSafe mode blurs images at or above the threshold and unscored ones;\n")
        text.append("space reveals the current one. Start with --no-blur to turn it off.\n")
        text.append("\nEsc closes this help.", style="dim")
        with Vertical(id="dialog"):
            yield Static(Text("Keys\n", style="bold"))
            yield Static(Padding(keys, (0, 0, 0, 2)))
            yield Static(text)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.question))
            yield Static(Text("y: yes    n / Esc: no", style="dim"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ModelScreen(ModalScreen[str | None]):
    """Pick the active model from the store's list."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, models: list[tuple[str, str]], active: str) -> None:
        super().__init__()
        self.models = models  # (id, description)
        self.active = active

    def compose(self) -> ComposeResult:
        options = [
            Option(Text(("* " if mid == self.active else "  ") + f"{mid}  {desc}"), id=mid)
            for mid, desc in self.models
        ]
        with Vertical(id="dialog"):
            yield Static(Text("Active model (enter to choose, Esc to cancel)", style="bold"))
            yield OptionList(*options, id="models")

    def on_mount(self) -> None:
        # start on the active model: enter at once keeps it, a move goes from where it stands
        ids = [mid for mid, _ in self.models]
        if self.active in ids:
            self.query_one("#models", OptionList).highlighted = ids.index(self.active)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
