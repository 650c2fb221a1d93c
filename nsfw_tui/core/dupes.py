"""Near-duplicate groups: cosine of the cached built-in features, else a perceptual hash."""

# Exact copies share a content hash and so are one image already. Near copies (resized,
# recompressed, lightly cropped) are found by the cosine similarity of the built-in network's
# pooled features, which every scan with it caches; an image without them (scored by a model
# that has no features) is compared by a 64-bit DCT perceptual hash of its decoded pixels.
# Groups are the connected components of "similar" pairs (union-find), so a chain of close
# variants is one group.

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .adapt_features import Features, cached_features
from .errors import ImageError
from .store import Store

BLOCK = 2048  # rows per block of the similarity product: 2048 x 2048 float32 is 16 MiB
HASH_SIDE = 32  # pHash: the grey image is shrunk to 32x32 and its 8x8 lowest DCT terms kept
FLAT = 1.0  # no low-frequency term this strong (grey levels 0-255): no pattern to hash
# Past PROJECT_MIN images, a first pass runs on PROJECT_DIMS principal directions: an exact
# bound that rules out nearly every pair for 1/16 of the products (similar_pairs).
PROJECT_MIN = 10_000
PROJECT_DIMS = 64
_BASIS_SAMPLE = 4096
_SLACK = 1e-3  # float32 rounding of the bound's two terms, far above its real size
_EXACT_SHARE = 0.02  # a block with more candidates than this is multiplied out in full


@dataclass
class Groups:
    """Each image's group: ``group[i]`` for ``shas[i]``; singletons are groups of one."""

    shas: list[str]
    group: np.ndarray  # (n,) int64, numbered by first member
    by_features: int = 0  # images compared by cached features
    by_hash: int = 0  # images compared by perceptual hash
    unchecked: list[str] = field(default_factory=list)  # neither (no features, undecodable)

    def __post_init__(self) -> None:
        self.index = {s: i for i, s in enumerate(self.shas)}
        self._of = dict(zip(self.shas, self.group.tolist(), strict=True))  # plain ints: fast

    def of(self, sha: str | None) -> int | None:
        return self._of.get(sha) if sha else None

    def members(self) -> list[list[str]]:
        """Groups of two or more images, each sorted, largest first."""
        out: dict[int, list[str]] = {}
        for sha, g in zip(self.shas, self.group.tolist(), strict=True):
            out.setdefault(g, []).append(sha)
        groups = [sorted(m) for m in out.values() if len(m) > 1]
        return sorted(groups, key=lambda m: (-len(m), m[0]))

    def keys(self) -> dict[str, str]:
        """Image hash -> a key shared by its group (the smallest hash in it)."""
        first: dict[int, str] = {}
        for sha, g in zip(self.shas, self.group.tolist(), strict=True):
            if g not in first or sha < first[g]:
                first[g] = sha
        return {sha: first[g] for sha, g in zip(self.shas, self.group.tolist(), strict=True)}


# -- features ---------------------------------------------------------------------------


def unit_vectors(features: Features) -> np.ndarray:
    """One unit vector per image (the mean of its frames), float16, in ``features.shas`` order."""
    n = len(features.shas)
    if n == 0:
        return np.zeros((0, features.frames.shape[1] if features.frames.ndim == 2 else 0))
    starts = np.searchsorted(features.owner, np.arange(n))
    sums = np.add.reduceat(features.frames.astype(np.float32), starts, axis=0)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float16)


def similar_pairs(
    vectors: np.ndarray,
    threshold: float,
    block: int = BLOCK,
    should_stop: Callable[[], bool] | None = None,
    project: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Index pairs (i < j) whose cosine is at least ``threshold``, one block at a time.

    Brute force over float16 unit vectors, each block widened to float32 for the product
    (numpy has no fast float16 matrix product): memory stays at two blocks and their product.
    From PROJECT_MIN vectors on (or when ``project`` names the dimensions), the blocks are
    first compared on the leading principal directions: the same pairs, found faster.
    """
    n = len(vectors)
    dims = project if project is not None else (PROJECT_DIMS if n >= PROJECT_MIN else 0)
    if 0 < dims < vectors.shape[1]:
        yield from _projected_pairs(vectors, threshold, block, should_stop, dims)
        return
    for a in range(0, n, block):
        if should_stop is not None and should_stop():
            return
        left = vectors[a : a + block].astype(np.float32)
        for b in range(a, n, block):
            right = left if b == a else vectors[b : b + block].astype(np.float32)
            yield from _pairs_at_least(left @ right.T, threshold, a, b)


def _pairs_at_least(
    sims: np.ndarray, threshold: float, a: int, b: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    i, j = np.nonzero(sims >= threshold)
    i, j = i + a, j + b
    keep = i < j
    if keep.any():
        yield i[keep], j[keep]


def _projected_pairs(
    vectors: np.ndarray,
    threshold: float,
    block: int,
    should_stop: Callable[[], bool] | None,
    dims: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """similar_pairs with a bound first. Split each vector x into its part Px on an
    orthonormal basis of ``dims`` leading principal directions and the rest Rx: then
    x.y = Px.Py + Rx.Ry <= Px.Py + |Rx||Ry|. Pairs whose bound misses the threshold cannot
    reach it; the few left are measured exactly, so the answer is brute force's."""
    n = len(vectors)
    rng = np.random.default_rng(0)
    sample = vectors[rng.choice(n, min(n, _BASIS_SAMPLE), replace=False)].astype(np.float32)
    _, eigvecs = np.linalg.eigh(sample.T @ sample)  # ascending: the last are the leading
    basis = np.ascontiguousarray(eigvecs[:, ::-1][:, :dims])
    proj = np.empty((n, dims), np.float32)
    rest = np.empty(n, np.float32)
    for a in range(0, n, block):
        x = vectors[a : a + block].astype(np.float32)
        p = x @ basis
        proj[a : a + block] = p
        rest[a : a + block] = np.sqrt(
            np.maximum(np.einsum("ij,ij->i", x, x) - np.einsum("ij,ij->i", p, p), 0.0)
        )
    for a in range(0, n, block):
        if should_stop is not None and should_stop():
            return
        left = vectors[a : a + block]
        for b in range(a, n, block):
            # the block's largest |Rx||Ry| first (one pass fewer over the block), then the
            # pair's own bound on what is left
            loose = threshold - _SLACK - rest[a : a + block].max() * rest[b : b + block].max()
            i, j = np.nonzero(proj[a : a + block] @ proj[b : b + block].T >= loose)
            i, j = i + a, j + b
            keep = i < j
            i, j = i[keep], j[keep]
            if len(i) > _EXACT_SHARE * len(left) * min(block, n - b):
                right = vectors[b : b + block].astype(np.float32)  # the bound rules out too little
                yield from _pairs_at_least(left.astype(np.float32) @ right.T, threshold, a, b)
                continue
            tight = np.einsum("ij,ij->i", proj[i], proj[j]) + rest[i] * rest[j]
            keep = tight >= threshold - _SLACK
            i, j = i[keep], j[keep]
            if len(i):
                sims = np.einsum(
                    "ij,ij->i", vectors[i].astype(np.float32), vectors[j].astype(np.float32)
                )
                ok = sims >= threshold
                if ok.any():
                    yield i[ok], j[ok]


# -- perceptual hash --------------------------------------------------------------------


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT = _dct_matrix(HASH_SIDE)


def phash(image) -> int | None:
    """64-bit DCT perceptual hash of a PIL image: its 8x8 lowest frequencies against the median.

    None for a flat image: with no pattern every bit is noise, and any two flat images
    (whatever their colours) would match.
    """
    from PIL import Image

    grey = np.asarray(
        image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS),
        dtype=np.float64,
    )
    low = (_DCT @ grey @ _DCT.T)[:8, :8].ravel()
    if np.abs(low[1:]).max() < FLAT:
        return None
    bits = low > np.median(low[1:])  # the DC term sets brightness only
    return int(np.packbits(bits).view(">u8")[0])


def hash_pairs(
    hashes: np.ndarray, max_distance: int, block: int = BLOCK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Index pairs (i < j) of uint64 hashes at most ``max_distance`` bits apart."""
    n = len(hashes)
    for a in range(0, n, block):
        left = hashes[a : a + block]
        for b in range(a, n, block):
            right = hashes[b : b + block]
            dist = np.bitwise_count(left[:, None] ^ right[None, :])
            i, j = np.nonzero(dist <= max_distance)
            i, j = i + a, j + b
            keep = i < j
            if keep.any():
                yield i[keep], j[keep]


# -- groups -----------------------------------------------------------------------------


def components(n: int, pairs: Iterator[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected components of ``n`` nodes joined by ``pairs``: a group index per node."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for left, right in pairs:
        for i, j in zip(left.tolist(), right.tolist(), strict=True):
            ri, rj = root(i), root(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([root(i) for i in range(n)], dtype=np.int64)
    _, group = np.unique(roots, return_inverse=True)
    return group.astype(np.int64)


def group_vectors(
    shas: Sequence[str],
    vectors: np.ndarray,
    threshold: float,
    should_stop: Callable[[], bool] | None = None,
    project: int | None = None,
) -> Groups:
    """Groups of images whose unit vectors are ``threshold``-similar (cosine), chained
    (``project``: see similar_pairs; 0 forces brute force)."""
    pairs = similar_pairs(vectors, threshold, should_stop=should_stop, project=project)
    group = components(len(shas), pairs)
    return Groups(list(shas), group, by_features=len(shas))


def group_hashes(shas: Sequence[str], hashes: Sequence[int], max_distance: int) -> Groups:
    """Groups of images whose perceptual hashes are at most ``max_distance`` bits apart."""
    arr = np.asarray(list(hashes), dtype=np.uint64)
    group = components(len(shas), hash_pairs(arr, max_distance))
    return Groups(list(shas), group, by_hash=len(shas))


def _hash_of(path: str) -> int | None:
    from .images import load_image

    try:
        return phash(load_image(path, draft=(128, 128), max_frames=1).frames[0])
    except ImageError:
        return None


def near_duplicates(
    store: Store,
    shas: Sequence[str],
    threshold: float,
    max_distance: int,
    paths: Mapping[str, str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], object] | None = None,
    features: Features | None = None,
) -> Groups:
    """Near-duplicate groups of ``shas``: by cached features, else by perceptual hash.

    ``paths`` (image hash -> a file holding it) lets images without cached features be
    decoded for their hash; without a path, or when it does not decode, an image stays
    alone and is listed in ``unchecked``. The two kinds are not compared with each other.
    ``features``: the cached features of ``shas`` where the caller has read them already.
    """
    unique = sorted(set(shas))
    feats = cached_features(store, unique) if features is None else features
    featured = group_vectors(feats.shas, unit_vectors(feats), threshold, should_stop)
    rest = sorted(set(unique) - set(feats.shas))
    hashed: list[str] = []
    hashes: list[int] = []
    unchecked: list[str] = []
    for done, sha in enumerate(rest, 1):
        if should_stop is not None and should_stop():
            break
        path = paths.get(sha) if paths else None
        h = _hash_of(path) if path else None
        if h is None:
            unchecked.append(sha)
        else:
            hashed.append(sha)
            hashes.append(h)
        if on_progress is not None:
            on_progress(done, len(rest))
    by_hash = group_hashes(hashed, hashes, max_distance)
    parts = [featured.group, by_hash.group + len(featured.shas)]
    parts.append(np.arange(len(unchecked), dtype=np.int64) + len(featured.shas) + len(hashed))
    all_shas = featured.shas + hashed + unchecked
    return Groups(
        all_shas,
        _renumber(np.concatenate(parts)),
        by_features=len(featured.shas),
        by_hash=len(hashed),
        unchecked=unchecked,
    )


def _renumber(group: np.ndarray) -> np.ndarray:
    """Group indices 0..k-1 by first appearance."""
    _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


# -- files ------------------------------------------------------------------------------

CSV_COLUMNS = ("group", "size", "image_path", "sha256", "similar_by")


@dataclass
class FileGroup:
    """One group of two or more files: exact copies and near copies together."""

    files: list[tuple[str, str]]  # (path, sha256), sorted by path
    similar_by: str  # "features" | "phash" | "hash" (exact copies only)


def file_groups(groups: Groups, paths: Mapping[str, Sequence[str]]) -> list[FileGroup]:
    """Groups of files (``paths``: image hash -> the files holding it), largest first.

    Files with the same hash are one image and so always one group; a group of one file is
    no duplicate and is left out.
    """
    by_group: dict[int, list[tuple[str, str]]] = {}
    for sha, files in paths.items():
        g = groups.of(sha)
        key = g if g is not None else -1 - len(by_group)
        by_group.setdefault(key, []).extend((p, sha) for p in files)
    out = []
    for members in by_group.values():
        if len(members) < 2:
            continue
        shas = {sha for _, sha in members}
        if len(shas) == 1:
            kind = "hash"
        else:
            i = groups.index[next(iter(shas))]
            kind = "features" if i < groups.by_features else "phash"
        out.append(FileGroup(sorted(members), kind))
    return sorted(out, key=lambda g: (-len(g.files), g.files[0][0]))


def write_groups(groups: Sequence[FileGroup], output, shown: Callable[[str], str]) -> None:
    """``groups`` as CSV (``CSV_COLUMNS``), atomically; ``shown`` turns a path into text."""
    import csv

    from .atomic import atomic_write
    from .errors import NsfwTuiError

    try:
        with atomic_write(output, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for number, group in enumerate(groups, 1):
                for path, sha in group.files:
                    writer.writerow([number, len(group.files), shown(path), sha, group.similar_by])
    except OSError as exc:
        raise NsfwTuiError(f"cannot write {output}: {exc.strerror or exc}") from exc
