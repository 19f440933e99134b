"""The untrusted side of grading: a worker process that runs the student's code, and the data format
both sides speak.

The grader (tests/graded/sandbox.py) starts this file as its own process, in the student's folder,
as an unprivileged user on the autograder, with time, memory, file-size and process limits. It reads
requests (one JSON line each: a probe function's source, helper sources, arguments) on stdin, runs
the probe (which imports and calls the student's functions) and writes one JSON line per request
to the file descriptor named by $HW5_RESULTS_FD. Results are plain data: JSON, with tensors, tuples, bytes and dicts with
non-string keys as tagged objects. Decoding builds nothing but those values, so whatever the student
process writes cannot run code in the grader; a wrong or forged result can only fail its test.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import traceback

DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")


def encode(value):
    """A value -> JSON-ready data (tensors and numpy arrays as tagged base64 bytes)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [encode(v) for v in value]
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"__items__": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):   # numpy scalars and arrays
        import torch
        return encode(torch.as_tensor(value))
    if type(value).__name__ in ("Tensor", "Parameter"):
        import torch
        t = value.detach().cpu().contiguous()
        dtype = str(t.dtype).replace("torch.", "")
        flat = t.reshape(-1)
        data = (flat.to(torch.uint8) if dtype == "bool" else flat.view(torch.uint8)).numpy().tobytes()
        return {"__tensor__": {"dtype": dtype, "shape": list(t.shape), "data": base64.b64encode(data).decode()}}
    raise TypeError(f"cannot send a {type(value).__name__} between grader and student code")


def decode(data):
    """JSON data -> values; tensors come back as torch tensors. Only the tags above are understood."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__items__" in data:
        return {_hashable(decode(k)): decode(v) for k, v in data["__items__"]}
    if "__bytes__" in data:
        return base64.b64decode(data["__bytes__"])
    if "__tensor__" in data:
        return _tensor(data["__tensor__"])
    return {k: decode(v) for k, v in data.items()}


def _hashable(key):
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    return key


def _tensor(spec: dict):
    import torch
    dtype, shape = spec["dtype"], [int(n) for n in spec["shape"]]
    if dtype not in DTYPES:
        raise ValueError(f"unknown tensor dtype {dtype!r}")
    raw = base64.b64decode(spec["data"])
    torch_dtype = getattr(torch, dtype)
    count = 1
    for n in shape:
        count *= n
    if len(raw) != count * (1 if dtype == "bool" else torch.empty((), dtype=torch_dtype).element_size()):
        raise ValueError("tensor data does not match its shape")
    if count == 0:
        return torch.empty(shape, dtype=torch_dtype)
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return (flat.bool() if dtype == "bool" else flat.view(torch_dtype)).reshape(shape).clone()


# -- the worker ------------------------------------------------------------------------------

def _where(tb) -> str:
    """file:line of the deepest frame in the student's folder (not in the probe or the libraries)."""
    frames = [f for f in traceback.extract_tb(tb) if os.path.abspath(f.filename).startswith(os.getcwd() + os.sep)]
    if not frames:
        return ""
    f = frames[-1]
    return f"{os.path.relpath(f.filename)}:{f.lineno}: {(f.line or '').strip()}"[:300]


def serve(results) -> None:
    for line in sys.stdin:
        request = json.loads(line)
        try:
            import torch   # probes and helpers may use torch, nn and F without importing them
            namespace = {"__name__": "probe", "torch": torch, "nn": torch.nn, "F": torch.nn.functional}
            for source in request["helpers"] + [request["probe"]]:
                exec(compile(source, "<grader probe>", "exec"), namespace)
            value = namespace[request["name"]](*decode(request["args"]), **decode(request["kwargs"]))
            reply = {"ok": True, "result": encode(value)}
        except BaseException as e:   # SystemExit and KeyboardInterrupt too: they are the student's code's
            reply = {"ok": False, "type": type(e).__name__, "message": str(e)[:500], "where": _where(e.__traceback__)}
        results.write(json.dumps(reply) + "\n")
        results.flush()


def main() -> None:
    results = os.fdopen(int(os.environ["HW5_RESULTS_FD"]), "w", encoding="utf-8")   # the only way back
    sys.path.insert(0, os.getcwd())                       # the student's folder: `import gpt`
    serve(results)


if __name__ == "__main__":
    main()
