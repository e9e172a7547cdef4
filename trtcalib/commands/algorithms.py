"""`trtcalib algorithms`: list the registered amax algorithms (built-ins and plugins)."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("algorithms")
    def algorithms_command(
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    ) -> None:
        """List the calibration algorithms usable with --calibrator NAME.

        Shows each algorithm's name, the TensorRT cache header it writes (e.g.
        EntropyCalibration2), its parameters with defaults, and what it computes. Plugins
        registered with @register_algorithm or the `trtcalib.algorithms` entry point group
        appear here too.

        Example: trtcalib algorithms --json
        """
        from rich.table import Table

        from trtcalib.console import console
        from trtcalib.stats import available_algorithms, get_algorithm

        rows = []
        for name in available_algorithms():
            algo = get_algorithm(name)
            rows.append(
                {
                    "name": name,
                    "trt_algorithm": algo.trt_algorithm,
                    "defaults": dict(algo.defaults),
                    "description": algo.description,
                }
            )
        if as_json:
            console.print(json.dumps(rows, indent=2), markup=False, highlight=False)
            return
        table = Table(title="amax algorithms (--calibrator NAME)")
        table.add_column("name", style="bold")
        table.add_column("TensorRT header")
        table.add_column("parameters (defaults)")
        table.add_column("description")
        for row in rows:
            params = ", ".join(f"{k}={v:g}" for k, v in row["defaults"].items()) or "-"
            table.add_row(row["name"], row["trt_algorithm"], params, row["description"])
        console.print(table)
