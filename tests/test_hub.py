"""Repo ids read from a Hugging Face cache that the test lays out itself, as huggingface_hub
does: blobs named by hash, snapshots of links into them, refs naming the snapshot's commit."""

import hashlib
import os

import pytest

import candlewick as cw

COMMIT = "a" * 40
OTHER = "b" * 40


def _snapshot(cache, repo_id, files, commit=COMMIT, ref="main"):
    """Lay out `files` ({name in repo: source path}) as repo_id's snapshot `commit`."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    snap = os.path.join(repo, "snapshots", commit)
    for name, src in files.items():
        # a blob named by a hash (of the source's path: the models are too big to copy), linked
        # to the source rather than copied
        blob = os.path.join(repo, "blobs", hashlib.sha256(os.path.abspath(src).encode()).hexdigest())
        if not os.path.lexists(blob):
            os.symlink(os.path.abspath(src), blob)
        link = os.path.join(snap, name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    if ref is not None:
        os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
        with open(os.path.join(repo, "refs", ref), "w") as f:
            f.write(commit)
    return snap


@pytest.fixture
def cache(tmp_path, monkeypatch):
    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return str(hub)


def _minilm_files():
    folder = cw.resolve("all-minilm-l6-v2")
    return {f: os.path.join(folder, f) for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))}


def test_hf_folder_repo_from_cache(cache):
    snap = _snapshot(cache, "sentence-transformers/all-MiniLM-L6-v2", _minilm_files())
    assert cw.resolve("sentence-transformers/all-MiniLM-L6-v2") == snap
    enc = cw.load("sentence-transformers/all-MiniLM-L6-v2")
    ref = cw.load("all-minilm-l6-v2").embed("A man is eating food.")
    assert enc.info["path"].startswith(snap)
    assert abs(enc.embed("A man is eating food.") - ref).max() < 1e-6
    assert "sentence-transformers/all-MiniLM-L6-v2" in cw.available_models()


def test_gguf_repo_from_cache(cache, smollm2_path):
    repo = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    snap = _snapshot(cache, repo, {"smollm2-135m-instruct-q4_1.gguf": smollm2_path})
    m = cw.load(repo)
    assert m.info["path"] == os.path.join(snap, "smollm2-135m-instruct-q4_1.gguf")
    want = cw.load(smollm2_path).generate("The capital of France is", max_new_tokens=4).text
    assert m.generate("The capital of France is", max_new_tokens=4).text == want
    # a second quantization: the choice must be named
    _snapshot(cache, repo, {"smollm2-135m-instruct-q4_1.gguf": smollm2_path, "other-Q8_0.gguf": smollm2_path})
    with pytest.raises(FileNotFoundError, match="holds 2 .gguf files; choose one with filename="):
        cw.resolve(repo)
    assert cw.resolve(repo, filename="*Q8_0.gguf") == os.path.join(snap, "other-Q8_0.gguf")
    with pytest.raises(FileNotFoundError, match="no files .* match '\\*Q2_K.gguf'"):
        cw.load(repo, filename="*Q2_K.gguf")


def test_revisions_and_commits(cache, smollm2_path):
    repo = "org/tiny-GGUF"
    _snapshot(cache, repo, {"a.gguf": smollm2_path})
    tagged = _snapshot(cache, repo, {"b.gguf": smollm2_path}, commit=OTHER, ref="v1.0")
    assert cw.resolve(repo).endswith(os.path.join(COMMIT, "a.gguf"))
    assert cw.resolve(repo, revision="v1.0") == os.path.join(tagged, "b.gguf")
    assert cw.resolve(repo, revision=OTHER) == os.path.join(tagged, "b.gguf")
    with pytest.raises(FileNotFoundError, match="without revision 'dev'.*refs there: main, v1.0"):
        cw.resolve(repo, revision="dev")
    with pytest.raises(TypeError, match="revision must be a str"):
        cw.resolve(repo, revision=3)
    with pytest.raises(ValueError, match="apply to hub repo ids"):
        cw.resolve("smollm2-135m-instruct", revision="main")


def test_cache_location_variables(tmp_path, monkeypatch, smollm2_path):
    hub = tmp_path / "elsewhere"
    _snapshot(str(hub), "org/m-GGUF", {"m.gguf": smollm2_path})
    monkeypatch.setenv("HF_HOME", str(tmp_path / "nothing-here"))
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        cw.resolve("org/m-GGUF")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))  # wins over HF_HOME, as in huggingface_hub
    assert cw.resolve("org/m-GGUF").startswith(str(hub))
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "xdg" / "huggingface" / "hub")):
        cw.resolve("org/m-GGUF")


def test_missing_and_broken(cache, smollm2_path):
    with pytest.raises(FileNotFoundError) as e:
        cw.load("HuggingFaceTB/SmolLM2-135M-Instruct")
    msg = str(e.value)
    assert os.path.join(cache, "models--HuggingFaceTB--SmolLM2-135M-Instruct") in msg and "never downloads" in msg
    # an unfinished download: the snapshot links to a blob that is not there
    snap = _snapshot(cache, "org/broken", _minilm_files())
    blob = os.path.join(os.path.dirname(snap), "..", "blobs", os.readlink(os.path.join(snap, "model.safetensors")).split("/")[-1])
    os.remove(blob)
    with pytest.raises(FileNotFoundError, match="model.safetensors links to a blob that is missing"):
        cw.load("org/broken")
    # a ref that does not hold a commit
    repo = os.path.join(cache, "models--org--badref")
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write("../../../etc/passwd")
    with pytest.raises(FileNotFoundError, match="does not hold a commit hash"):
        cw.load("org/badref")
    # a snapshot with nothing candlewick reads
    _snapshot(cache, "org/text-only", {"README.md": smollm2_path})
    with pytest.raises(FileNotFoundError, match="holds neither config.json nor a .gguf"):
        cw.load("org/text-only")
    assert "org/text-only" not in cw.available_models()


def test_repo_id_falls_back_to_the_package(cache):
    # not in the cache, but an installed package carries that model
    assert cw.resolve("sentence-transformers/all-MiniLM-L6-v2") == cw.resolve("all-minilm-l6-v2")
    # a revision names the hub's copy: not found there is not found
    with pytest.raises(FileNotFoundError, match="models--sentence-transformers--all-MiniLM-L6-v2"):
        cw.resolve("sentence-transformers/all-MiniLM-L6-v2", revision="v1")


def test_config_alone_is_not_a_model(cache, smollm2_path):
    files = _minilm_files()
    _snapshot(cache, "org/config-only", {"config.json": files["config.json"]})
    with pytest.raises(FileNotFoundError, match="holds config.json but no .safetensors weights"):
        cw.resolve("org/config-only")
    assert "org/config-only" not in cw.available_models()
    # a GGUF repo that also ships a config.json is read as GGUF
    _snapshot(cache, "org/gguf-with-config", {"config.json": files["config.json"], "m.gguf": smollm2_path})
    assert cw.resolve("org/gguf-with-config").endswith("m.gguf")


def test_case_and_bare_names(cache, smollm2_path):
    _snapshot(cache, "gpt2", {"model.gguf": smollm2_path})
    assert cw.resolve("gpt2").endswith("model.gguf")
    assert "gpt2" in cw.available_models()
    _snapshot(cache, "Org/MixedCase-GGUF", {"x.gguf": smollm2_path})
    assert cw.resolve("org/mixedcase-gguf").endswith("x.gguf")
    assert cw.available_models(installed=True)[0] in cw.available_models()
