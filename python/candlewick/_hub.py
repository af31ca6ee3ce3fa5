"""Models where users keep them: the local Hugging Face cache, read as huggingface_hub lays it out
(never downloading anything).

    <cache>/models--<org>--<name>/refs/<revision>     a file holding the snapshot's commit hash
    <cache>/models--<org>--<name>/snapshots/<commit>/ the repo's files (links into ../../blobs)

<cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
~/.cache/huggingface/hub, as huggingface_hub reads them.
"""

import fnmatch
import os
import re
from typing import List, Optional

# huggingface_hub's repo-id rule: "name" or "namespace/name", of letters, digits, "-", "_", "."
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def cache_dir() -> str:
    """The Hugging Face hub cache folder this process would use (it need not exist).

        >>> from candlewick._hub import cache_dir; cache_dir()   # doctest: +SKIP
        '/home/me/.cache/huggingface/hub'
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "huggingface", "hub")


def is_repo_id(source: str) -> bool:
    """Whether `source` reads as a hub repo id ("org/name") rather than a path."""
    return bool(_REPO_ID.match(source)) and ".." not in source


def is_repo_name(source: str) -> bool:
    """Whether `source` reads as a hub repo name without an org ("gpt2")."""
    return bool(_REPO_NAME.match(source))


def in_cache(repo_id: str) -> bool:
    """Whether the cache has a folder for `repo_id` (complete or not)."""
    return _repo_folder(cache_dir(), repo_id) is not None


def _repo_folder(cache: str, repo_id: str) -> Optional[str]:
    """models--org--name in `cache`; repo ids are case-sensitive on the hub, but a folder that
    differs only in case is taken when it is the only one."""
    name = "models--" + repo_id.replace("/", "--")
    exact = os.path.join(cache, name)
    if os.path.isdir(exact):
        return exact
    try:
        near = [e for e in os.listdir(cache) if e.lower() == name.lower()]
    except OSError:
        return None
    return os.path.join(cache, near[0]) if len(near) == 1 else None


def _snapshot(folder: str, repo_id: str, revision: str) -> str:
    refs, snaps = os.path.join(folder, "refs"), os.path.join(folder, "snapshots")
    commit = None
    ref = os.path.join(refs, *revision.split("/"))
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8", errors="replace") as f:
            commit = f.read(128).strip()
        if not _COMMIT.match(commit):
            raise FileNotFoundError(f"{repo_id}: {ref} does not hold a commit hash (got {commit[:60]!r})")
    elif _COMMIT.match(revision):
        commit = revision
    if commit is None or not os.path.isdir(os.path.join(snaps, commit)):
        have = sorted(os.listdir(refs)) if os.path.isdir(refs) else []
        what = f"revision {revision!r}" if commit is None else f"snapshot {commit} (revision {revision!r})"
        raise FileNotFoundError(
            f"{repo_id} is in the Hugging Face cache ({folder}) but without {what}; "
            f"refs there: {', '.join(have) or 'none'}")
    return os.path.join(snaps, commit)


def _files(snapshot: str) -> List[str]:
    out = []
    for root, dirs, files in os.walk(snapshot):
        dirs.sort()
        out += [os.path.relpath(os.path.join(root, f), snapshot) for f in sorted(files)]
    return out


def _is_model_folder(files: List[str]) -> bool:
    """An HF model folder: config.json beside safetensors weights (a snapshot with config.json
    alone is what fetching a config leaves; a GGUF repo may ship one too)."""
    return "config.json" in files and any(f.endswith(".safetensors") for f in files)


def find(repo_id: str, revision: Optional[str] = None, filename: Optional[str] = None) -> str:
    """The local path of `repo_id` in the Hugging Face cache: its snapshot folder when it holds a
    config.json and safetensors weights (an HF model folder), else its one .gguf file, or the file matching `filename`
    (a name or a glob, as llama-cpp-python's from_pretrained takes it). Raises FileNotFoundError
    naming where it looked."""
    revision = revision or "main"
    cache = cache_dir()
    folder = _repo_folder(cache, repo_id)
    if folder is None:
        raise FileNotFoundError(
            f"model {repo_id!r} is no file or folder here, nor in the Hugging Face cache: looked for "
            f"{os.path.join(cache, 'models--' + repo_id.replace('/', '--'))} (the cache is $HF_HUB_CACHE, "
            f"else $HF_HOME/hub, else ~/.cache/huggingface/hub; candlewick never downloads: "
            f"`hf download {repo_id}` fetches it)")
    snap = _snapshot(folder, repo_id, revision)
    files = _files(snap)
    broken = [f for f in files if not os.path.exists(os.path.join(snap, f))]
    if filename is not None:
        hits = [f for f in files if fnmatch.fnmatch(f, filename) or fnmatch.fnmatch(os.path.basename(f), filename)]
        if len(hits) != 1:
            raise FileNotFoundError(
                f"{repo_id}: {'no' if not hits else len(hits)} files in {snap} match {filename!r}"
                f" ({', '.join(hits or files) or 'the snapshot is empty'})")
        path = os.path.join(snap, hits[0])
        if hits[0] in broken:
            raise FileNotFoundError(f"{repo_id}: {path} links to a blob that is missing (an unfinished download?)")
        return path
    if _is_model_folder(files):
        if broken:
            raise FileNotFoundError(f"{repo_id}: {os.path.join(snap, broken[0])} links to a blob that is missing "
                                    f"(an unfinished download?)")
        return snap
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    if len(ggufs) == 1 and ggufs[0] not in broken:
        return os.path.join(snap, ggufs[0])
    if len(ggufs) > 1:
        raise FileNotFoundError(f"{repo_id} holds {len(ggufs)} .gguf files; choose one with filename= "
                                f"({', '.join(ggufs)})")
    if "config.json" in files:
        raise FileNotFoundError(f"{repo_id}: {snap} holds config.json but no .safetensors weights (only the "
                                f"config was downloaded? candlewick reads safetensors, not .bin)")
    raise FileNotFoundError(f"{repo_id}: {snap} holds neither config.json nor a .gguf file "
                            f"({', '.join(files[:8]) or 'it is empty'})")


def cached_repos() -> List[str]:
    """Repo ids in the Hugging Face cache that hold a model candlewick can read (a snapshot of
    revision main with config.json and safetensors weights, or a .gguf file)."""
    cache = cache_dir()
    try:
        entries = sorted(os.listdir(cache))
    except OSError:
        return []
    out = []
    for e in entries:
        if not e.startswith("models--") or len(e) == len("models--"):
            continue
        repo_id = e[len("models--"):].replace("--", "/", 1)  # "models--gpt2" is the org-less "gpt2"
        try:
            snap = _snapshot(os.path.join(cache, e), repo_id, "main")
        except (FileNotFoundError, OSError):
            continue
        files = _files(snap)
        if _is_model_folder(files) or any(f.lower().endswith(".gguf") for f in files):
            out.append(repo_id)
    return out
