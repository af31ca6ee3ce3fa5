"""Run a snippet of hostile use in its own process, under a timeout and an address-space limit,
and report how it ended: a clean exception, a normal return, or a crash (abort, panic, hang,
runaway memory). The snippet calls `expect(fn, *exception_types)` or prints its own verdict."""

import os
import subprocess
import sys
import textwrap

PRELUDE = r'''
import os, resource, sys, signal, time
limit = int(os.environ["HOSTILE_MEM"])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.path.insert(0, os.environ["HOSTILE_TESTS"])
import candlewick as cw

def expect(fn, *types, match=None):
    """fn must raise one of types (an Exception, never a PanicException or a crash)."""
    try:
        r = fn()
    except types as e:
        msg = str(e)
        if match is not None and match.lower() not in msg.lower():
            print("WRONG-MESSAGE", type(e).__name__, msg[:300])
            sys.exit(5)
        print("CLEAN", type(e).__name__, msg[:300])
        return e
    except BaseException as e:
        print("WRONG", type(e).__module__, type(e).__name__, str(e)[:300])
        sys.exit(3)
    print("NO-ERROR", repr(r)[:300])
    sys.exit(4)
'''

HERE = os.path.dirname(os.path.abspath(__file__))


def run(code, timeout=120, mem_gib=6, env=None):
    """(returncode, stdout, stderr) of the snippet; returncode None on timeout."""
    e = dict(os.environ)
    e.update({"HOSTILE_MEM": str(int(mem_gib * 2**30)), "HOSTILE_TESTS": HERE, "RUST_BACKTRACE": "0"})
    e.update(env or {})
    src = PRELUDE + textwrap.dedent(code)
    try:
        p = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=timeout, env=e)
    except subprocess.TimeoutExpired as t:
        return None, t.stdout or "", t.stderr or ""
    return p.returncode, p.stdout, p.stderr


def check(code, **kw):
    """Assert the snippet ended cleanly; returns its stdout."""
    rc, out, err = run(code, **kw)
    assert rc is not None, f"hung (timeout)\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert rc == 0, f"exit {rc}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}"
    assert "panicked" not in err, err[-3000:]
    return out
