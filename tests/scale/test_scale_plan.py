"""Sources, the output folder and the command's refusals, without starting Ray."""

from __future__ import annotations

import json
import os

import pytest
from support.imagegen import photo_folder
from typer.testing import CliRunner

from nsfw_tui.cli.root import app
from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.scale.outdir import MANIFEST, Manifest, OutDir
from nsfw_tui.scale.sources import plan_source

pytest.importorskip("pyarrow")
runner = CliRunner()


def test_a_folder_a_glob_and_manifests_name_the_same_files(tmp_path):
    files = [str(p) for p in photo_folder(tmp_path / "src", 3, size=(32, 24))]
    (tmp_path / "src" / ".hidden.jpg").write_bytes(b"x")
    by_folder = plan_source(str(tmp_path / "src"))
    assert [e.key for e in by_folder.files] == files and by_folder.local
    assert [e.key for e in plan_source(str(tmp_path / "src" / "*.jpg")).files] == files
    (tmp_path / "list.csv").write_text("path\n" + "\n".join(os.path.basename(f) for f in files))
    os.replace(tmp_path / "list.csv", tmp_path / "src" / "list.csv")
    by_csv = plan_source(str(tmp_path / "src" / "list.csv"))  # relative to the manifest
    assert [e.key for e in by_csv.files] == files

    import pyarrow as pa
    import pyarrow.parquet as pq

    uris = [f"file://{f}" for f in files] + [f"file://{tmp_path}/nope.jpg"]
    pq.write_table(pa.table({"uri": uris}), tmp_path / "list.parquet")
    by_parquet = plan_source(str(tmp_path / "list.parquet"))
    assert [e.key for e in by_parquet.files] == uris[:3] and not by_parquet.local
    assert [(p.path, p.kind) for p in by_parquet.problems] == [(uris[3], "missing")]


def test_unreadable_inputs_are_rows_not_reads(tmp_path):
    src = tmp_path / "src"
    photo_folder(src, 1, size=(32, 24))
    os.mkfifo(src / "pipe.jpg")
    big = src / "huge.jpg"
    with open(big, "wb") as fh:
        fh.truncate(300 * 1024 * 1024)  # sparse: over the 256 MiB limit, never read
    odd = os.fsdecode(os.fsencode(str(src)) + b"/odd-\xff.jpg")
    with open(odd, "wb") as fh:
        fh.write(b"x")
    plan = plan_source(str(src))
    kinds = {os.path.basename(p.path): p.kind for p in plan.problems}
    assert kinds == {
        "pipe.jpg": "unreadable",
        "huge.jpg": "too-large",
        "odd-\\xff.jpg": "unreadable",
    }
    assert [os.path.basename(e.key) for e in plan.files] == ["img_000.jpg"]


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_text("name\na.jpg\n"), "has no column named uri or path"),
        (lambda p: p.write_text("uri\nfile:///a.jpg\n/b.jpg\n"), "mixes URIs and local paths"),
    ],
)
def test_a_bad_manifest_gets_one_clear_error(tmp_path, write, message):
    write(tmp_path / "m.csv")
    with pytest.raises(NsfwTuiError, match=message):
        plan_source(str(tmp_path / "m.csv"))


def test_a_missing_source_and_an_empty_glob_are_refused(tmp_path):
    with pytest.raises(NsfwTuiError, match="source not found"):
        plan_source(str(tmp_path / "nope"))
    with pytest.raises(NsfwTuiError, match="nothing matches"):
        plan_source(str(tmp_path / "*.webp"))


def test_the_manifest_lists_parts_and_unlisted_parts_are_orphans(tmp_path):
    import pyarrow as pa

    out = OutDir.open(str(tmp_path / "out"))
    out.prepare()
    m = Manifest("open_nsfw", "/src", 0.2)
    name = out.write_part(pa.table({"image_path": ["/src/a.jpg", "/src/b.jpg"]}), "r1", 0)
    out.write_part(pa.table({"image_path": ["/src/c.jpg"]}), "r1", 1)  # never listed
    m.parts.append({"file": name, "rows": 2})
    out.write_manifest(m)
    again = out.manifest()
    assert again == m
    assert out.done_keys(again) == {"/src/a.jpg", "/src/b.jpg"}
    assert out.remove_orphans(again) == ["part-r1-00001.parquet"]
    assert sorted(os.listdir(tmp_path / "out")) == [MANIFEST, name]
    assert not [n for n in os.listdir(tmp_path / "out") if n.endswith(".tmp")]


def test_a_folder_of_other_files_or_a_foreign_manifest_is_refused(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(NsfwTuiError, match="holds other files"):
        OutDir.open(str(tmp_path / "busy")).prepare()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(NsfwTuiError, match="not a usable scores manifest"):
        OutDir.open(str(tmp_path / "other")).manifest()


def test_ray_scan_needs_an_output_and_shared_paths_on_a_cluster(tmp_path, home):
    photo_folder(tmp_path / "src", 1, size=(32, 24))
    base = ["scan", str(tmp_path / "src"), "--engine", "ray", "--home", str(home)]
    result = runner.invoke(app, base)
    assert result.exit_code == 2 and "error: --engine ray writes its results to -o" in (
        result.output
    )
    result = runner.invoke(app, [*base, "-o", str(tmp_path / "out"), "--address", "auto"])
    assert result.exit_code == 2
    assert "the source, and" in result.output and "is a local path" in result.output
    uri_src = f"file://{tmp_path}/src"
    args = ["scan", uri_src, "--engine", "ray", "-o", str(tmp_path / "o"), "--address", "auto"]
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == 2 and "the output must be shared" in result.output
    result = runner.invoke(app, ["scan", str(tmp_path / "src"), "--features"])
    assert result.exit_code == 2 and "need --engine ray" in result.output
    result = runner.invoke(app, ["scan", str(tmp_path / "src"), "--engine", "spark"])
    assert result.exit_code == 2 and "--engine must be local or ray" in result.output


def test_import_scores_refuses_a_folder_without_a_manifest(tmp_path, home):
    (tmp_path / "out").mkdir()
    result = runner.invoke(app, ["import-scores", str(tmp_path / "out"), "--home", str(home)])
    assert result.exit_code == 2 and "holds no _manifest.json" in result.output


def test_without_the_scale_extra_the_command_names_it(tmp_path, home, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    photo_folder(tmp_path / "src", 1, size=(32, 24))
    args = ["scan", str(tmp_path / "src"), "--engine", "ray", "-o", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == 2
    assert "needs the scale extra (ray is not installed): pip install 'nsfw-tui[scale]'" in (
        result.output
    )
    assert not (tmp_path / "out").exists()


def test_import_scores_keeps_uris_verbatim_and_one_row_per_input(tmp_path, store):
    import numpy as np

    from nsfw_tui.core.scorers import ensure_builtin
    from nsfw_tui.scale.importer import import_scores
    from nsfw_tui.scale.worker import COLUMNS, _columns

    ensure_builtin(store)
    feats = np.linspace(-1, 1, 1024, dtype=np.float16)
    uri, member = "s3://bucket/a b/x.jpg", "s3://bucket/shard-0.tar#0001.jpg"

    def rows(prob: float) -> dict:
        out = {name: [None, None] for name in COLUMNS}
        out.update(
            image_path=[uri, member],
            probability=[prob, None],
            error=["", "truncated: JPEG file is incomplete"],
            error_kind=[None, "truncated"],
            sha256=["a" * 64, "b" * 64],
            size=[1234, 99],
            n_frames=[1, None],
            features=[feats.tobytes(), None],
            node=["n1", "n1"],
        )
        return out | {"shard": ["", ""], "shard_total": [0, 0]}

    out = OutDir.open(str(tmp_path / "out"))
    out.prepare()
    m = Manifest("open_nsfw", "s3://bucket/", 0.2, features=True)
    for seq, prob in enumerate((0.75, 0.01)):  # the second part repeats both inputs
        m.parts.append({"file": out.write_part(_columns(rows(prob)), "r", seq), "rows": 2})
    out.write_manifest(m)
    seen: list[tuple[int, int]] = []
    summary = import_scores(str(tmp_path / "out"), store, lambda *a: seen.append(a))
    assert seen[-1] == (4, 4)  # rows read of rows listed
    assert (summary.rows, summary.scored, summary.errors) == (2, 1, 1)
    assert (summary.remote, summary.duplicates, summary.features) == (2, 2, 1)
    files = store.files([uri, member])
    assert files[uri].sha256 == "a" * 64 and files[uri].size == 1234
    assert files[member].error_kind == "truncated"
    assert store.remote_files() == 2  # what the review screen says it cannot show
    assert store.predictions("open_nsfw", ["a" * 64, "b" * 64]) == {"a" * 64: 0.75}
    assert np.array_equal(store.features("open_nsfw", "a" * 64), feats[None, :])


async def test_the_review_screen_says_how_many_scored_images_are_remote(tmp_path, home):
    """Imported URIs and shard members are counted at open; local files are not."""
    from types import SimpleNamespace

    from support.tui import record_notes, settle
    from textual_image.widget import HalfcellImage

    from nsfw_tui.core.home import Home
    from nsfw_tui.core.scan import ScanOptions
    from nsfw_tui.core.store import ScoreRecord, Store
    from nsfw_tui.tui.app import make_app
    from nsfw_tui.tui.settings import ReviewSettings

    keys = ["s3://bucket/a.jpg", "gs://b/shard-0.tar#1.jpg", "/data/shard-1.tar#2.jpg"]
    with Store.open(home / "store.db") as store:
        records = [ScoreRecord(k, 10, 0, f"{i:064x}") for i, k in enumerate(keys)]
        records.append(ScoreRecord(str(tmp_path / "local.jpg"), 10, 0, "f" * 64))
        store.record_files(records)
        assert store.remote_files() == 3
    (tmp_path / "photos").mkdir()
    settings = ReviewSettings(
        scan_options=ScanOptions(workers=0),
        image_class=HalfcellImage,
        scorer_factory=lambda row: SimpleNamespace(id=row.id),
    )
    app = record_notes(make_app(tmp_path / "photos", home=Home(home), settings=settings))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, timeout=30)
        assert (
            "information",
            "Remote images",
            "3 scored images are remote (URIs or tar shard members from import-scores): this "
            "screen shows images whose bytes are on this machine.",
        ) in app.notes


def test_import_scores_takes_the_features_of_the_sampled_frames_only(tmp_path, store):
    """A 20-frame animation is scored on 8 sampled frames: 8 feature rows, not 20."""
    import numpy as np

    from nsfw_tui.core.scorers import ensure_builtin
    from nsfw_tui.scale.importer import import_scores
    from nsfw_tui.scale.worker import COLUMNS, _columns

    ensure_builtin(store)
    feats = np.linspace(-1, 1, 8 * 1024, dtype=np.float16).reshape(8, 1024)
    row = {name: [None] for name in COLUMNS}
    row.update(
        image_path=["s3://bucket/anim.gif"],
        probability=[0.5],
        error=[""],
        sha256=["c" * 64],
        size=[10],
        n_frames=[20],
        features=[feats.tobytes()],
        node=["n1"],
    )
    out = OutDir.open(str(tmp_path / "out"))
    out.prepare()
    m = Manifest("open_nsfw", "s3://bucket/", 0.2, features=True)
    m.parts.append(
        {
            "file": out.write_part(_columns(row | {"shard": [""], "shard_total": [0]}), "r", 0),
            "rows": 1,
        }
    )
    out.write_manifest(m)
    summary = import_scores(str(tmp_path / "out"), store, lambda *a: None)
    assert summary.features == 1
    assert np.array_equal(store.features("open_nsfw", "c" * 64), feats)


def test_a_remote_manifest_of_bare_names_is_refused():
    with pytest.raises(NsfwTuiError, match="must list full URIs"):
        from nsfw_tui.scale.sources import _plan_manifest

        _plan_manifest("s3://b/dir/m.csv", ["a.jpg"], "s3://b/dir")
