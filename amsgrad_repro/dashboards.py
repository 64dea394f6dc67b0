"""TensorBoard's two dashboards for an invocation: its figure as a Custom Scalars layout, and every run that ran as
an HParams session. Written with the ``tensorboard`` package's own protos (no TensorFlow, no torch).

Usage::

    from amsgrad_repro.dashboards import write_layout, write_sessions

    write_layout(run_dir, "Figure 1 (online): online/paper", [("Figure 1, left: R_t/t", ["^average_regret$"])])
    write_sessions(run_dir, summary["runs"], lambda row: {"optimizer": row["optimizer"]}, "online/paper")

**Custom Scalars.** Each invocation writes one layout, in its own event file at the root of its run directory
(TensorBoard lists that directory as a run with no scalars). The plugin merges the layouts of every run it
sees; categories merge by title, so each invocation's category is titled with its run directory and no layout
clobbers another. A chart's regexes select *tags*, in every run TensorBoard shows: with several invocations
under one ``--logdir``, filter the runs by the category's name (TensorBoard's run filter), or open one run
directory (``tensorboard --logdir logs/online/paper``).

**HParams.** For each run that ran, a small event file in the run's own directory holds its session: the
hyperparameters (and the run's status, as the ``status`` hparam) at the start, and TensorBoard's session status
at the end (complete → success, failed → failure, interrupted → unknown, for TensorBoard has no "stopped").
The metrics are the run's own scalar tags: the HParams dashboard takes each tag's last value, which is what
summary.json records as the final value. No experiment summary is written: TensorBoard then derives the
experiment from all sessions it sees, so the grids of several invocations share one table instead of the first
invocation's definition hiding the others'.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from google.protobuf import struct_pb2
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as layout_metadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from .events import EventWriter

#: a run's status in summary.json → TensorBoard's session status
SESSION_STATUS = {
    "complete": api_pb2.STATUS_SUCCESS,
    "failed": api_pb2.STATUS_FAILURE,
    "interrupted": api_pb2.STATUS_UNKNOWN,
    "running": api_pb2.STATUS_RUNNING,
}

HParamValue = str | float | int | bool | None


def layout_summary(title: str, charts: Sequence[tuple[str, Sequence[str]]]) -> summary_pb2.Summary:
    """One Custom Scalars category ``title`` of multiline charts ``(chart title, [tag regex, ...])``."""
    layout = layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title=title,
                chart=[
                    layout_pb2.Chart(title=name, multiline=layout_pb2.MultilineChartContent(tag=list(tags)))
                    for name, tags in charts
                ],
            )
        ]
    )
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        string_val=[layout.SerializeToString()],
    )
    value = summary_pb2.Summary.Value(
        tag=layout_metadata.CONFIG_SUMMARY_TAG, metadata=layout_metadata.create_summary_metadata(), tensor=tensor
    )
    return summary_pb2.Summary(value=[value])


def write_layout(run_dir: Path, title: str, charts: Sequence[tuple[str, Sequence[str]]]) -> None:
    """The invocation's layout, in an event file of its own at the root of ``run_dir``."""
    with EventWriter(run_dir) as writer:
        writer.add_summary(layout_summary(title, charts), step=0)


def _hparams_summary(info: plugin_data_pb2.HParamsPluginData, tag: str) -> summary_pb2.Summary:
    value = summary_pb2.Summary.Value(
        tag=tag, metadata=hparams_metadata.create_summary_metadata(info), tensor=hparams_metadata.NULL_TENSOR
    )
    return summary_pb2.Summary(value=[value])


def session_summaries(
    hparams: dict[str, HParamValue], status: str, group: str, start: float, end: float
) -> list[summary_pb2.Summary]:
    """A session's start (its hyperparameters; None values are left out) and its end (its status)."""
    start_info = plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=start)
    for name, value in sorted(hparams.items()):
        if value is None:
            continue
        if isinstance(value, bool):
            start_info.hparams[name].CopyFrom(struct_pb2.Value(bool_value=value))
        elif isinstance(value, (int, float)):
            start_info.hparams[name].CopyFrom(struct_pb2.Value(number_value=float(value)))
        else:
            start_info.hparams[name].CopyFrom(struct_pb2.Value(string_value=str(value)))
    end_info = plugin_data_pb2.SessionEndInfo(
        status=SESSION_STATUS.get(status, api_pb2.STATUS_UNKNOWN), end_time_secs=end
    )
    return [
        _hparams_summary(plugin_data_pb2.HParamsPluginData(session_start_info=start_info),
                         hparams_metadata.SESSION_START_INFO_TAG),
        _hparams_summary(plugin_data_pb2.HParamsPluginData(session_end_info=end_info),
                         hparams_metadata.SESSION_END_INFO_TAG),
    ]  # fmt: skip


def write_sessions(
    run_dir: Path, rows: Iterable[dict], hparams: Callable[[dict], dict[str, HParamValue]], group: str
) -> None:
    """One HParams session per run that ran (rows of summary.json; "not started" runs have no directory), in a
    small event file beside the run's scalars. ``hparams(row)`` gives the run's hyperparameters; its status is
    added as the ``status`` hparam. ``group`` (the invocation's ``setting/run-name``) prefixes each session's
    group name, so that runs of the same name in two invocations stay two rows of the table."""
    now = time.time()
    for row in rows:
        if row["status"] == "not started":
            continue
        values = hparams(row) | {"status": row["status"]}
        seconds = float(row.get("seconds") or 0.0)
        with EventWriter(run_dir / row["name"]) as writer:
            for summary in session_summaries(values, row["status"], f"{group}/{row['name']}", now - seconds, now):
                writer.add_summary(summary, step=0)
