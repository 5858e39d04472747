"""`benchmarks.onnx_recurrent` at toy size: every format of both models is timed, and the fused graph is the one measured.

No timing is asserted (the machine is shared): only that each row exists with a
ratio computed from its own value and baseline, that the fused graphs hold the
fused ops (tf2onnx's a Loop) and that the fused graph matches Keras.
"""

import re


def test_toy_run_times_every_format_and_checks_the_fused_graph(monkeypatch):
    from benchmarks import common, onnx_recurrent

    monkeypatch.setattr(common, "TOY", True)

    outcome = onnx_recurrent.run(quick=True)

    assert outcome["name"] == "onnx_recurrent"
    rows = {(row["case"], row["metric"]): row for row in outcome["rows"]}
    for case in ("series", "text"):
        for batch_size in (1, 32):
            metric = f"latency batch {batch_size}"
            for label, baseline in (("savedmodel", "savedmodel"), ("tf2onnx", "savedmodel"), ("fused fp32", "savedmodel"), ("fused int8", "fused fp32")):
                row = rows[(f"{case} {label}", metric)]
                assert row["baseline_case"] == f"{case} {baseline}"
                assert row["value"] > 0 and row["baseline"] == rows[(f"{case} {baseline}", metric)]["value"]
                assert abs(row["ratio"] - row["value"] / row["baseline"]) <= 2e-3 * row["ratio"], row
    notes = "\n".join(outcome["notes"])
    for case in ("series", "text"):
        assert f'{case} fused fp32: ops {{"LSTM": 1}}' in notes
        assert f'{case} fused int8: ops {{"DynamicQuantizeLSTM": 1}}' in notes
        assert re.search(f'{case} tf2onnx: ops {{"Loop": [12]}}', notes), notes
    targets = {target["id"]: target for target in outcome["targets"]}
    assert set(targets) == {
        "fused_lstm_vs_savedmodel_batch1", "fused_lstm_vs_savedmodel_batch32", "fused_lstm_int8_vs_fp32", "fused_series_parity", "fused_text_parity",
    }
    assert targets["fused_series_parity"]["met"] is True and targets["fused_text_parity"]["met"] is True
    for target in targets.values():
        assert target["met"] == (target["value"] <= target["threshold"])
