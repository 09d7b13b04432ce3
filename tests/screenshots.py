"""Refresh the README's screenshots: `.venv/bin/python tests/screenshots.py [--home DIR]`.

Without --home: starts a platform of its own (free ports, a temporary MLOPS_HOME) and runs the
demo's story on the bundled penguins spec with the `mlops` CLI (a training, three drift
checks, the retraining the drifted one triggers). With --home: uses the running platform whose
MLOPS_HOME is DIR, where `mlops demo` has run. Then opens the four pages a user meets in
headless Chromium, each in a fresh browser, at the addresses the platform prints, and saves
them under tests/screenshots/.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import ARGS, CHROMIUM  # noqa: E402
from environment import clients_pointed_at  # noqa: E402
from own_platform import own_platform  # noqa: E402

OUT = ROOT / "tests" / "screenshots"
MODEL = "penguins"


def _json(running, *args: str) -> dict:
    done = running.run(*args, "--json", cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"mlops {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def _story(running, folder: Path) -> None:
    """The training, three checks, and the retraining the drifted one triggers."""
    from mlflow.tracking import MlflowClient

    from experiments.data import load_table
    from experiments.spec import load_spec
    from flows.demo import wait_for_retraining, write_batches

    print("training, three drift checks, the retraining the last one triggers ...", file=sys.stderr)
    _json(running, "train", MODEL, "--trials", "12")
    stationary, drifted = write_batches(load_table(load_spec(MODEL).data.source), folder)
    for batch in (stationary, stationary, drifted):
        check = _json(running, "monitor", MODEL, "--current", str(batch))
    if wait_for_retraining(MlflowClient(), MODEL, check["monitoring_run_id"], timeout_s=600) is None:
        raise SystemExit("the drifted check's retraining did not finish in 10 minutes")


def _pages(prefect_url: str) -> dict[str, tuple[str, str]]:
    """Each page's address, as the platform prints it, and a text it shows once loaded."""
    from mlflow.tracking import MlflowClient

    from flows.links import experiment_url, model_version_url, run_url

    client = MlflowClient()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    training = client.get_run(champion.run_id)
    checks = client.get_experiment_by_name(f"{MODEL}-monitoring").experiment_id
    return {
        "training-run": (run_url(client.tracking_uri, training.info.experiment_id, training.info.run_id),
                         "Child runs"),
        "model-version": (model_version_url(client.tracking_uri, MODEL, champion.version), "champion"),
        "monitoring-chart": (f"{experiment_url(client.tracking_uri, checks)}&compareRunsMode=CHART",
                             "Model metrics"),
        "prefect-runs": (f"{prefect_url}/runs?tag=model:{MODEL}", f"retrain {MODEL} after drift"),
    }


def _shoot(pages: dict[str, tuple[str, str]]) -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for name, (url, text) in pages.items():
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(url, wait_until="domcontentloaded")  # MLflow's UI polls: never idle
            page.get_by_text(text).first.wait_for(timeout=60_000)
            assistant = page.get_by_role("button", name="Close", exact=True)  # MLflow's chat panel
            if assistant.count():
                assistant.first.click()
            page.wait_for_timeout(3000)  # charts draw after the data arrives
            page.screenshot(path=OUT / f"{name}.png")
            print(f"{OUT / f'{name}.png'}  <-  {url}")
            context.close()
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="MLOPS_HOME of a running platform where the demo ran")
    home = parser.parse_args().home
    if home:
        from own_platform import OwnPlatform

        running = OwnPlatform(home.resolve(), {})
        with clients_pointed_at(running.client_environment()):
            _shoot(_pages(running.state()["prefect_url"]))
        return
    with tempfile.TemporaryDirectory() as folder, own_platform(Path(folder) / "home") as running:
        with clients_pointed_at(running.client_environment()):
            _story(running, Path(folder) / "batches")
            _shoot(_pages(running.state()["prefect_url"]))


if __name__ == "__main__":
    main()
