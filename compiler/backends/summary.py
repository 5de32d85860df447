"""IR -> summary: per layer name, type, output shapes, params, MACs and activation memory.

Params count learnable blob elements (shared blobs once; BatchNorm statistics not
counted, as derived-facts.json counts them); "trainable" those whose lr_mult is not 0,
the rest are frozen (fine-tuning's frozen layers). MACs are per image (batch item), as the
classic papers and derived-facts.json count them; their conv/fc total adds the layers whose
LayerDef says `conv_fc_macs`. Memory is for the whole batch, as the budget counts it
(compiler/accounting.py): a layer's is the float32 bytes of the buffers it allocates, so a
top written in place (a ReLU's) or aliasing its bottom (a Split's) adds nothing, and the
total counts each buffer once (what training keeps for the backward pass); the inference
peak is what an eager forward holds at once (accounting.inference_peak_bytes). A TRAIN net
also gets the memory of a training step (accounting.training_step_bytes: weights,
gradients, SGD's one history set, the activations kept for backward, the batch, the largest
workspace), the figure `--max-memory` bounds for it.
"""
import csv
import io
import json

from compiler.accounting import (activation_buffers, human_bytes, inference_peak_bytes, param_counts,
                                 training_step_bytes)
from compiler.layers import registry

def summarize(net):
    """(one row per layer, the totals) of a shaped net."""
    rows = list(layer_rows(net))
    return rows, summary_totals(net, rows)


def layer_rows(net, buffers=None):
    """The summary's row of each layer, in net order: a generator, so that totals over a
    net of a million layers need not hold a million rows. `buffers`: activation_buffers(net),
    where the caller has it."""
    seen_shared = set()
    buffer_of, size = buffers or activation_buffers(net)
    for layer in net.layers:
        defn = registry.get(layer.type)
        shapes = [net.blobs[b].shape for b in layer.bottoms]
        outs = [net.blobs[t].shape for t in layer.tops]
        trainable, frozen = param_counts(net, layer, seen_shared)
        yield {
            "name": layer.name, "type": layer.type,
            "output": [list(s) for s in outs],
            "params": trainable + frozen, "trainable": trainable, "frozen": frozen,
            "macs": defn.macs(layer, shapes, outs),
            "memory": sum(size[t] for t in layer.tops if buffer_of[t] == t),
        }


def summary_totals(net, rows=None):
    """The totals of the rows of a shaped net (`rows`: its layer_rows, made here when not
    given)."""
    totals = dict.fromkeys(("layers", "params", "trainable", "frozen", "macs", "conv_fc_macs", "memory"), 0)
    buffers = activation_buffers(net)
    for r in layer_rows(net, buffers) if rows is None else rows:
        totals["layers"] += 1
        for key in ("params", "trainable", "frozen", "macs", "memory"):
            totals[key] += r[key]
        if registry.get(r["type"]).conv_fc_macs:
            totals["conv_fc_macs"] += r["macs"]
    totals.update(inference_peak=inference_peak_bytes(net, buffers), training_step=_training_step(net), batch=_batch(net),
                  outputs={name: list(net.shape(name)) for name in net.outputs})
    return totals


def _training_step(net):
    """{part: bytes} of a training step with SGD of a TRAIN net, with the total; None in TEST."""
    if net.phase != "TRAIN":
        return None
    step = training_step_bytes(net)
    return dict(vars(step), total=step.total)


def _training_text(step):
    if step is None:
        return ""
    return "\na training step (SGD) needs %s: weights %s, gradients %s, history %s, activations kept for " \
           "backward %s, batch %s%s" % (
               human_bytes(step["total"]), human_bytes(step["weights"]), human_bytes(step["gradients"]),
               human_bytes(step["history"]), human_bytes(step["activations"]), human_bytes(step["inputs"]),
               ", workspace %s" % human_bytes(step["workspace"]) if step["workspace"] else "")


def _batch(net):
    """The batch the memory figures are for: the first input's axis 0 (None without inputs)."""
    shapes = [net.blobs[t].shape for t in net.inputs]
    return shapes[0][0] if shapes and shapes[0] else None


def _shape_text(shapes):
    return " ".join("x".join(str(d) for d in s) if s else "scalar" for s in shapes)


def _trainable_text(row):
    """"yes", "frozen", the trainable count when part of the layer is frozen, or "" for a
    layer without parameters."""
    if not row["params"]:
        return ""
    if not row["frozen"]:
        return "yes"
    return "frozen" if not row["trainable"] else "{:,}".format(row["trainable"])


def format_summary(net, fmt="table"):
    rows, totals = summarize(net)
    if fmt == "json":
        return json.dumps({"net": net.name, "layers": rows, "totals": totals}, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", "type", "output", "params", "macs", "memory_bytes", "trainable_params"])
        for r in rows:
            w.writerow([r["name"], r["type"], _shape_text(r["output"]), r["params"], r["macs"], r["memory"],
                        r["trainable"]])
        w.writerow(["TOTAL", "", "", totals["params"], totals["macs"], totals["memory"], totals["trainable"]])
        return buf.getvalue().rstrip("\n")
    table = [("layer", "type", "output", "params", "trainable", "MACs", "memory")]
    for r in rows:
        table.append((r["name"], r["type"], _shape_text(r["output"]), "{:,}".format(r["params"]),
                      _trainable_text(r), "{:,}".format(r["macs"]), human_bytes(r["memory"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for k, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    macs = "{:,}".format(totals["macs"])
    if totals["conv_fc_macs"] != totals["macs"]:
        macs += " (conv/fc %s)" % "{:,}".format(totals["conv_fc_macs"])
    lines.append("%s: %d layers, %s params (%s trainable, %s frozen), %s MACs per image, %s activations per "
                 "batch of %s (inference peak %s); outputs %s" % (
        net.name, totals["layers"], "{:,}".format(totals["params"]), "{:,}".format(totals["trainable"]),
        "{:,}".format(totals["frozen"]), macs,
        human_bytes(totals["memory"]), totals["batch"], human_bytes(totals["inference_peak"]),
        ", ".join("%s %s" % (k, "x".join(map(str, v))) for k, v in totals["outputs"].items()))
        + _training_text(totals["training_step"]))
    return "\n".join(lines)
