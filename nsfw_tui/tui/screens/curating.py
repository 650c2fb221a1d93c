"""The review screen's curation worker: near-duplicate groups, the useful order, suspects."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from textual import work
from textual.message import Message
from textual.worker import get_current_worker

from ...core.curation import Curation


@dataclass
class CurationReady(Message):
    curation: Curation
    base: Curation | None = None  # a novelty update: the curation it was computed from


class Curating:
    """Mixed into the review screen: gathers what the duplicates filter, the useful sort and
    the suspect filter need, off the UI thread, and hands it to the review."""

    def start_curation(self) -> None:
        """Groups, features, other models' calls, out-of-fold scores: after a load or a scan."""
        review = self.review
        if review is None:
            return
        paths: dict[str, str] = {}
        for row in review.rows:
            if row.sha256 and not row.error:
                paths.setdefault(row.sha256, row.path)
        self.curate(paths, review.model_id)

    def renew_novelty(self) -> None:
        """After labels change: how unlike the labelled images each image is, in a worker."""
        review = self.review
        if review is None or review.curation is None:
            return
        labelled = {r.sha256 for r in review.rows if r.sha256 and r.label}
        self.update_novelty(review.curation, labelled)

    @work(thread=True, exclusive=True, group="curation", exit_on_error=False)
    def curate(self, paths: dict[str, str], model_id: str) -> None:
        from ...core.config import load_config
        from ...core.config_schema import DupesConfig
        from ...core.curation import load_curation
        from ...core.errors import ConfigError

        worker = get_current_worker()
        try:
            settings = DupesConfig.from_config(load_config(None).dupes)
        except ConfigError as exc:
            self.app.call_from_thread(
                self.notify, f"{exc}; the defaults are used", title="Duplicates", markup=False
            )
            settings = DupesConfig()
        with self._store() as store:
            curation = load_curation(
                store,
                paths,
                model_id,
                settings.threshold,
                settings.phash_distance,
                should_stop=lambda: worker.is_cancelled,
            )
        if not worker.is_cancelled:
            self.post_message(CurationReady(curation))

    @work(thread=True, exclusive=True, group="novelty", exit_on_error=False)
    def update_novelty(self, curation: Curation, labelled: set[str]) -> None:
        fresh = copy.copy(curation)  # the review keeps reading the old one meanwhile
        fresh.update_novelty(labelled)
        self.post_message(CurationReady(fresh, base=curation))

    def on_curation_ready(self, message: CurationReady) -> None:
        if self.review is None:
            return
        if message.base is not None and message.base is not self.review.curation:
            self.renew_novelty()  # a newer curation came meanwhile: update that one instead
            return
        self.review.curation = message.curation
        self.refresh_all(self.current, tree=False)  # the grid's or the list's
