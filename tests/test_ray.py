"""candlewick.ray: the callable classes for Ray Data's map_batches, on a local 2-CPU Ray cluster,
give what one process gives; bad models and options fail when the object is built."""

import subprocess
import sys

import numpy as np
import pytest

import candlewick as cw

ray = pytest.importorskip("ray")
pd = pytest.importorskip("pandas")

from candlewick.ray import Embedder, Generator, Scorer, map_batches  # noqa: E402

PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The sky is",
           "My favourite food is", "2 + 2 ="]
TEXTS = ["A man is eating food.", "A man is riding a horse.", "The new movie is awesome.",
         "The cat sits outside.", "Someone is playing guitar.", "It is raining today."]
PAIRS = [("The capital of France is", " Paris"), ("The capital of France is", " London"),
         ("Water boils at", " 100 degrees"), ("Water boils at", " 10 degrees"),
         ("The opposite of hot is", " cold"), ("The opposite of hot is", " warm")]
GEN = {"max_new_tokens": 8}

# Ray Data's own DataContext warns about its deprecated fields when it is copied to workers
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module")
def cluster():
    # address="local": a new cluster, even where `ray start` left one running on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error",
             configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def minilm():
    return cw.load("all-minilm-l6-v2")


def test_generator_on_ray_matches_one_process(cluster, smollm2):
    smollm2 = cw.load("smollm2-135m-instruct")  # as the workers load it (f16 KV cache)
    want = [o.text for o in smollm2.generate(PROMPTS, **GEN)]
    ds = ray.data.from_items([{"i": i, "prompt": p} for i, p in enumerate(PROMPTS)])
    # as the docstrings show it: two actors of one CPU each, both CPUs of the local cluster
    out = ds.map_batches(Generator, fn_constructor_kwargs={"model": "smollm2-135m-instruct", **GEN},
                         concurrency=2, num_cpus=1, batch_size=2)
    rows = sorted(out.take_all(), key=lambda r: r["i"])
    assert [r["prompt"] for r in rows] == PROMPTS
    assert [r["text"] for r in rows] == want
    assert all(r["num_tokens"] == 8 and r["finish_reason"] == "length" for r in rows)


def test_embedder_on_ray_matches_one_process(cluster, minilm):
    want = minilm.embed(TEXTS)
    ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(TEXTS)])
    out = map_batches(ds, Embedder, concurrency=2, num_cpus=1, batch_size=2, model="all-minilm-l6-v2")
    rows = sorted(out.take_all(), key=lambda r: r["i"])
    got = np.stack([r["embedding"] for r in rows])
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_scorer_on_ray_matches_one_process(cluster, smollm2):
    smollm2 = cw.load("smollm2-135m-instruct")  # as the workers load it (f16 KV cache)
    want = [smollm2.score(c, [x])[0] for c, x in PAIRS]
    ds = ray.data.from_items([{"i": i, "context": c, "continuation": x} for i, (c, x) in enumerate(PAIRS)])
    # pandas batches through Ray as well
    out = map_batches(ds, Scorer, concurrency=2, num_cpus=1, batch_size=2, batch_format="pandas",
                      model="smollm2-135m-instruct")
    rows = sorted(out.take_all(), key=lambda r: r["i"])
    np.testing.assert_allclose([r["logprob"] for r in rows], [w.logprob for w in want], atol=1e-4)
    assert [bool(r["is_greedy"]) for r in rows] == [w.is_greedy for w in want]


def test_actors_compute_on_the_cpus_ray_assigned(cluster):
    @ray.remote(num_cpus=1)
    class Actor:
        def threads(self):
            return Embedder(model="all-minilm-l6-v2").threads

    assert ray.get(Actor.remote().threads.remote()) == 1


def test_numpy_and_pandas_batches_called_directly(smollm2, minilm):
    gen = Generator(model=smollm2, **GEN)
    want = [o.text for o in smollm2.generate(PROMPTS[:3], **GEN)]
    out = gen({"prompt": np.array(PROMPTS[:3], dtype=object)})
    assert isinstance(out, dict) and list(out["text"]) == want and list(out["prompt"]) == PROMPTS[:3]
    df = gen(pd.DataFrame({"prompt": PROMPTS[:3], "k": [1, 2, 3]}))
    assert isinstance(df, pd.DataFrame) and list(df["text"]) == want and list(df["k"]) == [1, 2, 3]
    assert list(gen({"prompt": np.array([], dtype=object)})["text"]) == []

    emb = Embedder(model=minilm)
    vecs = emb({"text": np.array(TEXTS[:2])})["embedding"]  # a numpy str_ column
    assert vecs.shape == (2, minilm.config.hidden_size) and vecs.dtype == np.float32
    col = emb(pd.DataFrame({"text": TEXTS[:2]}))["embedding"]
    np.testing.assert_allclose(np.stack(list(col)), vecs, atol=1e-6)

    sc = Scorer(model=smollm2)
    batch = {"context": np.array([c for c, _ in PAIRS], dtype=object),
             "continuation": np.array([x for _, x in PAIRS], dtype=object)}
    lp = sc(batch)["logprob"]
    assert lp.dtype == np.float64
    np.testing.assert_allclose(lp, [smollm2.score(c, [x])[0].logprob for c, x in PAIRS], atol=1e-4)
    np.testing.assert_allclose(sc(pd.DataFrame(batch))["logprob"].to_numpy(), lp, atol=1e-9)
    assert "Scorer" in repr(sc) and "max_new_tokens=8" in repr(gen)


def test_bad_model_fails_at_construction(tmp_path):
    for cls in (Generator, Embedder, Scorer):
        with pytest.raises(FileNotFoundError):
            cls(model=str(tmp_path / "no-such-model"))


def test_wrong_kind_of_model_fails_at_construction(smollm2):
    enc = cw.load("all-minilm-l6-v2")
    with pytest.raises(ValueError, match="Embedder needs an encoder model"):
        Embedder(model=smollm2)
    for cls in (Generator, Scorer):
        with pytest.raises(ValueError, match="needs a model that generates"):
            cls(model=enc)


def test_bad_options_fail_at_construction():
    with pytest.raises(TypeError):
        Generator(model="/never/read", bogus_option=1)
    with pytest.raises(ValueError):
        Generator(model="/never/read", max_new_tokens=-1)
    with pytest.raises(ValueError):
        Generator(model="/never/read", num_return_sequences=2)


def test_missing_column_says_which(smollm2):
    with pytest.raises(KeyError, match="'prompt'"):
        Generator(model=smollm2)({"text": np.array(["x"], dtype=object)})


def test_works_without_ray_until_a_helper_needs_it():
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "import candlewick.ray as r\n"
        "e = r.Embedder(model='all-minilm-l6-v2')\n"
        "print(e({'text': ['hi']})['embedding'].shape)\n"
        "try:\n    r.map_batches(None, r.Embedder)\n"
        "except ImportError as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "(1, 384)" in out.stdout
    assert "candlewick.ray needs Ray: pip install 'candlewick[ray]'" in out.stdout

