"""Runs LiteLLM's proxy (the `litellm` command of the venv this runs in) on a free loopback
port with tests/peers/litellm/config.yaml, as the other peers run: prints "ready PORT" once
/health/liveliness answers, serves until stdin closes, then stops the proxy. LiteLLM is kept
offline: its model cost map comes from the package, not the network, and telemetry is off."""
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

from _serve import free_port

HERE = pathlib.Path(__file__).resolve().parent


def main():
    port = free_port()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False",
               LITELLM_LOG="ERROR", NO_DOCS="True", DISABLE_ADMIN_UI="True")
    litellm = pathlib.Path(sys.executable).parent / "litellm"
    proxy = subprocess.Popen(
        [str(litellm), "--config", str(HERE / "litellm" / "config.yaml"),
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proxy.poll() is not None:
                sys.exit(f"litellm exited with {proxy.returncode} before it served")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness",
                                            timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit("litellm did not serve within 120s")
            time.sleep(0.2)
        print(f"ready {port}", flush=True)
        for _ in sys.stdin:
            pass
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()


if __name__ == "__main__":
    main()
