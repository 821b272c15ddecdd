"""The notebooks' canonical stored form (qnnlib.experiments.notebook_format), and a real Jupyter Server on
loopback: opening a notebook and saving it unchanged, as JupyterLab does, leaves the file byte for byte the same."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from qnnlib.experiments.notebook_format import (
    KERNELSPEC,
    LANGUAGE_INFO,
    dumps,
    is_canonical,
    main,
    normalise,
    normalise_file,
    pre_save_hook,
    write,
)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HOOK = "qnnlib.experiments.notebook_format.pre_save_hook"
SERVER_START_S = 30.0
KERNEL_START_S = 30.0
REPLY_S = 20.0


def _sample() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), nbformat.v4.new_code_cell("x = 1\nprint(x)")]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {**LANGUAGE_INFO, "version": "3.11.7"}
    nb.metadata["papermill"] = {"parameters": {"profile": "quick"}}
    return nb


# ---- unit -------------------------------------------------------------------------------------------------------

def test_normalise_sets_the_canonical_metadata_keeps_the_rest_and_is_idempotent() -> None:
    nb = _sample()
    ids = [c.id for c in nb.cells]
    once = dumps(normalise(nb))
    assert nb.metadata.kernelspec == KERNELSPEC and nb.metadata.language_info == LANGUAGE_INFO
    assert "version" not in nb.metadata.language_info
    assert [c.id for c in nb.cells] == ids and nb.cells[1].metadata["tags"] == ["parameters"]
    assert nb.metadata.papermill == {"parameters": {"profile": "quick"}}
    assert dumps(normalise(nbformat.reads(once, as_version=4))) == once


def test_normalise_works_on_a_plain_dict_without_metadata() -> None:
    nb = normalise({"cells": [], "nbformat": 4, "nbformat_minor": 5})
    assert nb["metadata"] == {"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO}
    nb["metadata"]["kernelspec"]["name"] = "changed"  # a copy, not the module's constant
    assert KERNELSPEC["name"] == "qnnlib"


def test_write_is_nbformats_serialisation_with_a_final_newline(tmp_path: Path) -> None:
    nb = _sample()
    write(nb, tmp_path / "a.ipynb")
    nbformat.write(nb, tmp_path / "b.ipynb", version=nbformat.NO_CONVERT)  # what Jupyter Server calls
    text = (tmp_path / "a.ipynb").read_bytes()
    assert text == (tmp_path / "b.ipynb").read_bytes()
    assert text.decode() == nbformat.writes(nb, version=4) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ipynb", "b.ipynb"]  # no temp file left


def test_normalise_file_reports_a_change_once_and_check_mode(tmp_path: Path, capsys) -> None:
    path = tmp_path / "n.ipynb"
    path.write_text(nbformat.writes(_sample(), version=4), encoding="utf-8")  # no final newline, patch version
    assert not is_canonical(path)
    assert main(["--check", str(path)]) == 1
    assert normalise_file(path) is True
    assert is_canonical(path) and normalise_file(path) is False
    assert main(["--check", str(path)]) == 0 and main([str(path)]) == 0
    assert "not canonical" in capsys.readouterr().out


def test_pre_save_hook_normalises_notebook_models_and_leaves_others_alone() -> None:
    model = {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(_sample()))}
    pre_save_hook(model=model, path="x.ipynb", contents_manager=None)
    assert model["content"]["metadata"]["kernelspec"] == KERNELSPEC
    assert model["content"]["metadata"]["language_info"] == LANGUAGE_INFO
    for other in ({"type": "file", "format": "text", "content": '{"metadata": {}}'},
                  {"type": "directory", "content": None},
                  {"type": "notebook"}):
        before = json.dumps(other, sort_keys=True)
        pre_save_hook(model=other, path="y", contents_manager=None)
        assert json.dumps(other, sort_keys=True) == before


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_is_stored_in_its_canonical_form(path: Path) -> None:
    assert is_canonical(path), (f"{path.name} is not in its canonical form: "
                                f"python -m qnnlib.experiments.notebook_format notebooks/*.ipynb")


# ---- a real Jupyter Server on loopback --------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Api:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def __call__(self, method: str, path: str, body: object = None, timeout: float = REPLY_S) -> object:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None


def _wait_for_server(proc: subprocess.Popen, api: _Api, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            api("GET", "/api/status", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    pytest.fail(f"jupyter server not up after {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path):
    """A Jupyter Server on 127.0.0.1 (random port and token) over normalised copies of notebooks/, with the
    project's pre-save hook and the project's kernelspec installed into a private prefix; yields (api, dirs)."""
    pytest.importorskip("jupyter_server", reason="jupyter_server is not installed (pip install -e .[dev])")
    from ipykernel.kernelspec import install as install_kernelspec

    root, prefix = tmp_path / "root", tmp_path / "prefix"
    root.mkdir()
    for nb in NOTEBOOKS:
        shutil.copy(nb, root / nb.name)
        normalise_file(root / nb.name)
    install_kernelspec(prefix=str(prefix), kernel_name=KERNELSPEC["name"], display_name=KERNELSPEC["display_name"])
    env = {**os.environ,
           "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_PLATFORM_DIRS": "0",
           "JUPYTER_NO_CONFIG": "1"}
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--ContentsManager.pre_save_hook={HOOK}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    try:
        api = _Api(f"http://127.0.0.1:{port}", token)
        _wait_for_server(proc, api, log)
        yield api, {"root": root, "runtime": tmp_path / "runtime", "log": log}
    finally:
        _stop(proc)


def _run(client, code: str) -> str:
    """Execute ``code`` on a blocking kernel client; the stdout it printed."""
    msg_id = client.execute(code)
    out, deadline = [], time.monotonic() + REPLY_S
    while time.monotonic() < deadline:
        msg = client.get_iopub_msg(timeout=REPLY_S)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "error":
            pytest.fail("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)
    pytest.fail(f"no reply to {code!r} in {REPLY_S} s")


def test_jupyter_server_runs_the_project_kernel_and_a_save_on_open_leaves_the_file_unchanged(server) -> None:
    from jupyter_client import BlockingKernelClient

    api, dirs = server
    listing = api("GET", "/api/contents/")
    names = {item["name"] for item in listing["content"] if item["type"] == "notebook"}
    assert names == {p.name for p in NOTEBOOKS}
    name = NOTEBOOKS[0].name
    before = (dirs["root"] / name).read_bytes()

    specs = api("GET", "/api/kernelspecs")
    assert KERNELSPEC["name"] in specs["kernelspecs"], specs["kernelspecs"].keys()
    session = api("POST", "/api/sessions", {"path": name, "name": name, "type": "notebook",
                                            "kernel": {"name": KERNELSPEC["name"]}})
    kernel_id = session["kernel"]["id"]
    try:
        connection = dirs["runtime"] / f"kernel-{kernel_id}.json"
        deadline = time.monotonic() + KERNEL_START_S
        while not connection.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        client = BlockingKernelClient()
        client.load_connection_file(str(connection))
        client.start_channels()
        try:
            client.wait_for_ready(timeout=KERNEL_START_S)
            import qnnlib

            assert _run(client, "import qnnlib; print(qnnlib.__version__)").strip() == qnnlib.__version__
            assert _run(client, "import sys; print(sys.prefix)").strip() == sys.prefix  # the project's env
            language_info = client.kernel_info(reply=True, timeout=REPLY_S)["content"]["language_info"]
        finally:
            client.stop_channels()
        assert {k: v for k, v in language_info.items() if k != "version"} == LANGUAGE_INFO
        assert "version" in language_info

        # What JupyterLab does on open: the kernel's full language_info and kernelspec go into the model,
        # and (auto)save PUTs it back.
        model = api("GET", f"/api/contents/{name}?content=1&type=notebook")
        content = model["content"]
        content["metadata"]["language_info"] = language_info
        content["metadata"]["kernelspec"] = {"name": KERNELSPEC["name"], "display_name": KERNELSPEC["display_name"],
                                             "language": "python"}
        saved = api("PUT", f"/api/contents/{name}", {"type": "notebook", "format": "json", "content": content})
        assert saved["name"] == name
        assert (dirs["root"] / name).read_bytes() == before

        # Even a kernelspec of another name is stored as the project's.
        content["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                             "language": "python"}
        api("PUT", f"/api/contents/{name}", {"type": "notebook", "format": "json", "content": content})
        assert (dirs["root"] / name).read_bytes() == before
    finally:
        try:
            api("DELETE", f"/api/sessions/{session['id']}")
        except urllib.error.URLError:
            pass
