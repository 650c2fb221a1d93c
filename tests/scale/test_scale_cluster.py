"""A real two-node Ray cluster on this machine: both nodes score part of one source."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from support.imagegen import photo_folder
from support.scale import RAY_ARGS, parts_rows

from nsfw_tui.scale.bundle import bundle_for
from nsfw_tui.scale.engine import EngineOptions, run_scan
from nsfw_tui.scale.outdir import OutDir
from nsfw_tui.scale.sources import plan_source


@pytest.fixture
def two_nodes():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    node = {"num_cpus": 1, "object_store_memory": RAY_ARGS["object_store_memory"]}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, runtime_env=RAY_ARGS["runtime_env"])
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_both_nodes_of_a_cluster_score_part_of_the_input(tmp_path, two_nodes, builtin_row):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    photo_folder(tmp_path / "shared" / "photos", 24, size=(48, 40))
    source = f"file://{tmp_path}/shared/photos"  # a shared file system, said so
    out = f"file://{tmp_path}/shared/out"
    options = EngineOptions(address=two_nodes.address, workers=2, batch_size=2)
    summary = run_scan(plan_source(source), OutDir.open(out), bundle_for(builtin_row), 0.2, options)
    rows = parts_rows(tmp_path / "shared" / "out")
    keys = Counter(r["image_path"] for r in rows)
    assert len(keys) == 24 and set(keys.values()) == {1}
    per_node = Counter(r["node"] for r in rows)
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert set(per_node) == alive, per_node  # each of the two nodes scored some
    assert summary.nodes == per_node


@pytest.mark.slow
def test_a_node_lost_mid_run_loses_and_repeats_nothing(tmp_path, two_nodes, builtin_row):
    """The worker node goes away after the first rows; a fresh node takes its place, as a
    cluster's autoscaler would bring one. Ray restarts the actors and retries their tasks."""
    photo_folder(tmp_path / "shared" / "photos", 40, size=(48, 40))
    workers = [n for n in two_nodes.list_all_nodes() if n is not two_nodes.head_node]
    lost: list[str] = []

    def lose_node(progress) -> None:
        if not lost and progress.done:
            lost.append(workers[0].unique_id)
            two_nodes.remove_node(workers[0], allow_graceful=False)
            two_nodes.add_node(num_cpus=1, object_store_memory=RAY_ARGS["object_store_memory"])

    options = EngineOptions(address=two_nodes.address, workers=2, batch_size=2, part_rows=1)
    summary = run_scan(
        plan_source(f"file://{tmp_path}/shared/photos"),
        OutDir.open(f"file://{tmp_path}/shared/out"),
        bundle_for(builtin_row),
        0.2,
        options,
        on_progress=lose_node,
    )
    assert lost
    rows = parts_rows(tmp_path / "shared" / "out")
    keys = Counter(r["image_path"] for r in rows)
    assert len(keys) == 40 and set(keys.values()) == {1}
    assert all(r["probability"] is not None for r in rows)
    assert summary.written == 40
