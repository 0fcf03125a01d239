"""Read a TensorBoard log folder with TensorBoard's own readers and print JSON.

Used by the Rust tests (tests/tensorboard.rs) as the independent reference:
    .uorch/venv/bin/python tests/tb_read.py LOGDIR
prints {"runs": {run: {"scalars", "texts", "histograms", "images", "hparams"}},
        "session_groups": [...], "warnings": [...]}.
"session_groups" is what the HParams dashboard lists, from the plugin's own
HTTP handler; "warnings" collects reader complaints (e.g. data loss).
"""
import hashlib
import json
import logging
import os
import sys

from google.protobuf import json_format
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import hparams_plugin, metadata as hp_metadata
from tensorboard.util import tensor_util
from werkzeug.test import Client

warnings = []


class Collect(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            warnings.append(record.getMessage())


logging.getLogger().addHandler(Collect())
logging.getLogger("tensorboard").addHandler(Collect())


def read_run(path):
    acc = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0, "histograms": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    out = {"scalars": {}, "texts": {}, "histograms": {}, "images": {}, "hparams": {}}
    for tag in tags["images"]:
        out["images"][tag] = [{"step": e.step, "width": e.width, "height": e.height,
                               "sha256": hashlib.sha256(e.encoded_image_string).hexdigest()}
                              for e in acc.Images(tag)]
    for tag in tags["scalars"]:
        out["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
    for tag in tags["histograms"]:
        out["histograms"][tag] = [
            {"step": e.step, **{k: getattr(e.histogram_value, k) for k in
                                ("min", "max", "num", "sum", "sum_squares")},
             "bucket_limit": list(e.histogram_value.bucket_limit),
             "bucket": list(e.histogram_value.bucket)}
            for e in acc.Histograms(tag)]
    for tag in tags["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        if plugin == "text":
            out["texts"][tag] = [[e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode("utf-8")]
                                 for e in acc.Tensors(tag)]
        elif plugin == "hparams":
            content = acc.SummaryMetadata(tag).plugin_data.content
            if tag == hp_metadata.EXPERIMENT_TAG:
                msg = hp_metadata.parse_experiment_plugin_data(content)
            elif tag == hp_metadata.SESSION_START_INFO_TAG:
                msg = hp_metadata.parse_session_start_info_plugin_data(content)
            else:
                msg = hp_metadata.parse_session_end_info_plugin_data(content)
            out["hparams"][tag] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out


def session_groups(logdir):
    """Ask the HParams plugin, as the dashboard does, which sessions it lists."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, logdir)
    ctx = base_plugin.TBContext(logdir=logdir, multiplexer=mux, data_provider=provider)
    plugin = hparams_plugin.HParamsPlugin(ctx)
    apps = plugin.get_plugin_apps()
    client = Client(apps["/session_groups"])
    req = {"experimentName": "", "startIndex": 0, "sliceSize": 1000,
           "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
           "colParams": [], "aggregationType": "AGGREGATION_AVG"}
    resp = client.post("/", data=json.dumps(req), content_type="application/json")
    if resp.status_code != 200:
        raise SystemExit(f"hparams plugin answered {resp.status_code}: {resp.get_data(as_text=True)}")
    return json.loads(resp.get_data(as_text=True)).get("sessionGroups", [])


def main():
    logdir = sys.argv[1]
    runs = {}
    for dirpath, _dirs, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            runs[os.path.relpath(dirpath, logdir)] = read_run(dirpath)
    out = {"runs": runs, "session_groups": session_groups(logdir), "warnings": warnings}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
