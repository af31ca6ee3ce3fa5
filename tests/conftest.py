import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fixtures"))


@pytest.fixture(scope="session")
def smollm2():
    import candlewick as cw

    return cw.load("smollm2-135m-instruct", kv_cache_dtype="float32")  # llama.cpp fixtures: f32 KV


@pytest.fixture(scope="session")
def smollm2_path():
    import candlewick as cw

    return cw.resolve("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def llamacpp_ref():
    with open(os.path.join(HERE, "fixtures", "smollm2_llamacpp.json"), encoding="utf-8") as f:
        return json.load(f)
