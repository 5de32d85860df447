"""IR -> pictures: Graphviz DOT (rendered by the `dot` binary) and a self-contained HTML page.

One box per layer, as Caffe's draw_net shows them, except that in-place layers (ReLU,
BatchNorm, Scale, Dropout written onto their bottom) are folded into the box of the layer
they follow: they change a value, not the shape of the net. Each box shows the layer's
name, type, key parameters and output shape. A net with errors still draws: the layers
that failed are marked, and those that depend on them show unknown shapes.

The HTML page embeds two Graphviz layouts, every layer and "blocks" (layers grouped by
name prefix: res2a_*, inception_3a/*), with the layer data as JSON and a small script for
pan, zoom and the details panel. It loads nothing from the network.
"""
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

from google.protobuf import text_format

from compiler.accounting import layer_params
from compiler.errors import NetdefError
from compiler.layers import registry
from compiler.proto import is_repeated

# Fill colours: a type's LayerDef.draw_color (the built-ins have Caffe's draw_net colours,
# lightened so text stays readable), else this one.
DEFAULT_COLOR = "#a9c4f5"
ERROR_COLOR = "#ff4d4d"
UNKNOWN_COLOR = "#e6e6e6"
# Fields every layer has; the key-parameter summary shows the type's own fields instead.
_COMMON = {"name", "type", "bottom", "top", "param", "include", "exclude", "phase", "blobs",
           "loss_weight", "propagate_down", "transform_param", "loss_param"}
DOT_TIMEOUT_S = 120
TEMPLATE = Path(__file__).with_name("draw_page.html")


def _is_in_place(layer):
    tops = list(layer.param.top)
    return bool(tops) and all(t in layer.param.bottom for t in tops)


def _dims(values):
    return "x".join(str(v) for v in values)


def key_params(layer):
    """A short line with a layer's main parameters: its LayerDef's draw_label ("k3 s1 p1,
    64 out", "MAX k3 s2 p0"), else the fields of its parameter blocks."""
    defn = registry.get(layer.type)
    label = defn.draw_label(layer) if defn is not None else None
    if label is not None:
        return label
    parts = []
    for field, value in layer.param.ListFields():
        if field.name in _COMMON or field.message_type is None or is_repeated(field):
            continue
        for sub, v in value.ListFields():
            if sub.message_type is not None:
                continue                     # fillers and nested shapes: too long for a box
            if sub.enum_type is not None:
                v = [sub.enum_type.values_by_number[x].name for x in v] if is_repeated(sub) else \
                    sub.enum_type.values_by_number[v].name
            parts.append("%s %s" % (sub.name, ",".join(map(_short, v)) if is_repeated(sub) else _short(v)))
    text = ", ".join(parts)
    return text if len(text) <= 48 else text[:45] + "..."


def _short(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return ("%g" % v) if isinstance(v, float) else str(v)


def _lr_mults(layer):
    return [("%g" % spec.lr_mult) for spec in layer.param.param]


# Code points XML forbids (Graphviz's HTML labels are XML: U+FFFE in a name makes it refuse
# the whole graph) and the longest name shown: Graphviz refuses a string over 16 KiB.
_NOT_XML = re.compile("[\x00-\x1f\x7f\ufdd0-\ufdef%s]" % "".join(
    "%s%s" % (chr(plane + 0xFFFE), chr(plane + 0xFFFF)) for plane in range(0, 0x110000, 0x10000)))
MAX_NAME = 1000


def _clean(text):
    """Names come from user files: printable in labels and SVG, valid XML, and short enough
    for Graphviz (a longer one is cut, with an ellipsis; ids stay unique, see _unique)."""
    text = _NOT_XML.sub("?", str(text))
    return text if len(text) <= MAX_NAME else text[:MAX_NAME] + "\u2026"


def _group_key(name):
    # "inception_3a/1x1" -> "inception_3a" (a '/' scope wins), "res2a_branch1" -> "res2a"
    return name.split("/", 1)[0] if "/" in name else name.split("_", 1)[0]


def build_view(net, errors=()):
    """The picture's model: {"nodes", "edges", "groups", "errors", "totals"} from a net that
    went through pipeline.check() (blobs may lack shapes where a layer failed)."""
    by_layer = {}
    for e in errors:
        by_layer.setdefault(e.layer, []).append(e)
    head = {}             # layer key -> key of the layer whose box shows it
    nodes, order = {}, []
    seen_shared = set()
    for layer in net.layers:
        producer = None
        if _is_in_place(layer) and layer.bottoms:
            blob = net.blobs.get(layer.bottoms[0])
            producer = blob.producer if blob is not None else None
        info = _layer_info(net, layer, by_layer.get(layer.name, []), seen_shared)
        if producer is not None and producer in head:
            node = nodes[head[producer]]
            head[layer.key] = head[producer]
            node["layers"].append(info)
            if layer.tops:
                node["outputs"] = info["outputs"]
            continue
        head[layer.key] = layer.key
        nodes[layer.key] = {"name": _clean(layer.name), "type": _clean(layer.type), "layers": [info],
                             "outputs": info["outputs"], "line": layer.line}
        order.append(layer.key)
    view_nodes = []
    index, ids = {}, set()
    for key in order:
        node = nodes[key]
        # The layer's name is its box's id (and, in the SVG, its title): a user searches the
        # picture for it and links to it. Cleaning can make two names one: keep ids unique.
        index[key] = node["id"] = _unique(node["name"], ids)
        node["params"] = _sum(x["params"] for x in node["layers"])
        node["macs"] = _sum(x["macs"] for x in node["layers"])
        node["error"] = any(x["errors"] for x in node["layers"])
        view_nodes.append(node)
    aux = _aux_prefix(ids)
    edges, missing = [], {}
    for layer in net.layers:
        dst = index[head[layer.key]]
        for sid in layer.bottoms:
            blob = net.blobs.get(sid)
            if blob is None:
                continue
            if blob.producer is None:     # an unknown bottom: draw the missing blob itself
                src, box = missing.setdefault(blob.name, "%sm%d" % (aux, len(missing))), None
            else:
                box = head[blob.producer]
                src = index[box]
            edge = {"src": src, "dst": dst, "blob": _clean(blob.name),
                    "shape": list(blob.shape) if blob.shape is not None else None,
                    "named": blob.name != box}    # label the edge when the box does not say it
            if src != dst and edge not in edges:
                edges.append(edge)
    groups = _groups(view_nodes, aux)
    return {"net": _clean(net.name), "file": _clean(net.file or ""), "aux": aux, "nodes": view_nodes, "edges": edges,
            "missing": [{"id": v, "blob": _clean(k)} for k, v in missing.items()], "groups": groups,
            "errors": [_error_dict(e) for e in errors if not e.layer or e.layer not in head],
            "totals": {"layers": len(net.layers), "params": _sum(n["params"] for n in view_nodes),
                       "macs": _sum(n["macs"] for n in view_nodes), "problems": len(errors)}}


def _unique(name, taken):
    """`name`, or name~2, name~3... if taken; added to `taken`."""
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = "%s~%d" % (name, k)
    taken.add(candidate)
    return candidate


def _aux_prefix(ids):
    """The start of the ids of what is not a layer (missing blobs, blocks, edges, the
    graph), chosen so that no layer's id starts with it: any string is a Caffe name."""
    prefix = "~"
    while any(i.startswith(prefix) for i in ids):
        prefix += "~"
    return prefix


def _sum(values):
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _error_dict(e):
    return {"where": _clean(e.location()), "layer": e.layer and _clean(e.layer),
            "message": _clean(e.message), "hint": e.hint and _clean(e.hint)}


def _layer_info(net, layer, errors, seen_shared):
    shapes = [net.blobs[b].shape if b in net.blobs else None for b in layer.bottoms]
    outs = [net.blobs[t].shape for t in layer.tops]
    params = macs = None
    defn = registry.get(layer.type)
    if defn is not None and not errors and all(s is not None for s in shapes + outs):
        params = layer_params(net, layer, seen_shared)
        macs = defn.macs(layer, shapes, outs)
    return {"name": _clean(layer.name), "type": _clean(layer.type), "line": layer.line,
            "key": _clean(key_params(layer)), "lr_mult": _lr_mults(layer),
            "outputs": [list(s) if s is not None else None for s in outs],
            "params": params, "macs": macs,
            "text": _clean_text(text_format.MessageToString(layer.param)),
            "errors": [_error_dict(e) for e in errors]}


def _clean_text(text):
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "?", text)


def _groups(nodes, aux):
    """Repeated blocks: nodes whose names share a prefix before '_' or '/' (res2a_branch1,
    res2a_branch2a, res2a -> "res2a"), kept when the net has at least two such blocks."""
    members = {}
    for node in nodes:
        members.setdefault(_group_key(node["name"]), []).append(node)
    groups = [(k, v) for k, v in members.items() if len(v) >= 2]
    if len(groups) < 2:
        return []
    out = []
    for i, (key, group) in enumerate(groups):
        gid = "%sg%d" % (aux, i)
        for node in group:
            node["group"] = gid
        types = {}
        for node in group:
            for x in node["layers"]:
                types[x["type"]] = types.get(x["type"], 0) + 1
        out.append({"id": gid, "name": key, "nodes": [n["id"] for n in group],
                    "layers": sum(len(n["layers"]) for n in group),
                    "types": types, "outputs": group[-1]["outputs"],
                    "params": _sum(n["params"] for n in group), "macs": _sum(n["macs"] for n in group),
                    "error": any(n["error"] for n in group)})
    return out


# ---- DOT ----

def _h(text):
    return html.escape(str(text), quote=True)


def _shape_line(outputs):
    return " ".join("?" if s is None else (_dims(s) if s else "scalar") for s in outputs)


def _node_label(node, show_lr_mult):
    head = node["layers"][0]
    rows = ['<TR><TD><B>%s</B></TD></TR>' % _h(node["name"]),
            '<TR><TD><FONT POINT-SIZE="10">%s%s</FONT></TD></TR>'
            % (_h(node["type"]), (" " + _h(head["key"])) if head["key"] else "")]
    if show_lr_mult and head["lr_mult"]:
        rows.append('<TR><TD><FONT POINT-SIZE="9">lr_mult %s</FONT></TD></TR>' % _h(", ".join(head["lr_mult"])))
    for x in node["layers"][1:]:
        rows.append('<TR><TD><FONT POINT-SIZE="9">+ %s %s</FONT></TD></TR>' % (_h(x["type"]), _h(x["key"])))
    rows.append('<TR><TD><FONT POINT-SIZE="10" COLOR="#333333">%s</FONT></TD></TR>' % _h(_shape_line(node["outputs"])))
    for x in node["layers"]:
        for e in x["errors"]:
            msg = e["message"] if len(e["message"]) <= 60 else e["message"][:57] + "..."
            rows.append('<TR><TD><FONT POINT-SIZE="9" COLOR="#b00000">%s</FONT></TD></TR>' % _h(msg))
    return '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">%s</TABLE>>' % "".join(rows)


def _fill(node):
    if not node["error"] and any(s is None for s in node["outputs"]):
        return UNKNOWN_COLOR      # valid itself, but below a failing layer: shapes unknown
    defn = registry.get(node["type"])
    return (defn is not None and defn.draw_color) or DEFAULT_COLOR


def _dot_id(name):
    """A DOT node name for any string: an HTML-like ID, the one form in which Graphviz
    keeps every character (entities stay escaped in the SVG, which XML then decodes); a
    quoted ID cannot end in a backslash."""
    return "<%s>" % _h(name)


def _node_attrs(node_id, label, color, error, style=None, prefix=""):
    # \N is the node's name: the SVG element's id is the name behind the page's prefix.
    attrs = ['id="%s\\N"' % prefix, "label=%s" % label, 'fillcolor="%s"' % color]
    if style:
        attrs.append('style="%s"' % style)
    if error:
        attrs += ['color="%s"' % ERROR_COLOR, "penwidth=3"]
    return "  %s [%s];" % (_dot_id(node_id), ", ".join(attrs))


def _header(view, rankdir, prefix):
    return ['digraph net {', '  id="%s%sgraph";' % (prefix, view["aux"]), '  rankdir=%s;' % rankdir,
            '  graph [fontname="Helvetica", nodesep=0.25, ranksep=0.35];',
            '  node [shape=box, style="rounded,filled", fontname="Helvetica", margin="0.08,0.04"];',
            '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']


def _edge_line(view, i, src, dst, label="", prefix=""):
    return '  %s -> %s [id="%s%se%d", label=<%s>];' % (_dot_id(src), _dot_id(dst), prefix, view["aux"], i, _h(label))


def _missing_lines(view, prefix=""):
    return ['  %s [id="%s\\N", shape=octagon, style="dashed,filled", fillcolor="#ffe0e0", color="%s", '
            'label=<missing blob<BR/><B>%s</B>>];' % (_dot_id(m["id"]), prefix, ERROR_COLOR, _h(m["blob"]))
            for m in view["missing"]]


def to_dot(view, rankdir="TB", show_lr_mult=False, prefix=""):
    """Every layer (in-place layers folded), grouped blocks drawn as clusters. `prefix`
    keeps element ids unique when two layouts share one HTML page."""
    lines = _header(view, rankdir, prefix)
    grouped = {}
    for node in view["nodes"]:
        grouped.setdefault(node.get("group"), []).append(node)
    names = {g["id"]: g["name"] for g in view["groups"]}
    for gid, members in grouped.items():
        indent = ""
        if gid is not None:
            lines.append('  subgraph <cluster%s> {' % _h(gid))
            lines.append('    id="%s%s"; label=<%s>; style="rounded,dashed"; color="#999999"; fontsize=10;'
                         % (prefix, gid, _h(names[gid])))
            indent = "  "
        for node in members:
            lines.append(indent + _node_attrs(node["id"], _node_label(node, show_lr_mult),
                                              _fill(node), node["error"], prefix=prefix))
        if gid is not None:
            lines.append("  }")
    lines += _missing_lines(view, prefix)
    lines += [_edge_line(view, i, e["src"], e["dst"], e["blob"] if e["named"] else "", prefix)
              for i, e in enumerate(view["edges"])]
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_dot_blocks(view, rankdir="TB", prefix="b_"):
    """One box per block (group), the other layers as they are."""
    group_of = {n["id"]: n.get("group") for n in view["nodes"]}
    lines = _header(view, rankdir, prefix)
    for g in view["groups"]:
        types = ", ".join("%s%s" % (t, " x%d" % n if n > 1 else "") for t, n in sorted(g["types"].items()))
        label = ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1"><TR><TD><B>%s</B> '
                 '<FONT POINT-SIZE="10">(%d layers)</FONT></TD></TR><TR><TD><FONT POINT-SIZE="9">%s</FONT>'
                 '</TD></TR><TR><TD><FONT POINT-SIZE="10" COLOR="#333333">%s</FONT></TD></TR></TABLE>>'
                 % (_h(g["name"]), g["layers"], _h(types), _h(_shape_line(g["outputs"]))))
        lines.append(_node_attrs(g["id"], label, "#e8e8e8", g["error"], "filled,bold", prefix))
    for node in view["nodes"]:
        if group_of[node["id"]] is None:
            lines.append(_node_attrs(node["id"], _node_label(node, False), _fill(node), node["error"], prefix=prefix))
    lines += _missing_lines(view, prefix)
    seen = set()
    for e in view["edges"]:
        src = group_of.get(e["src"]) or e["src"]
        dst = group_of.get(e["dst"]) or e["dst"]
        if src != dst and (src, dst) not in seen:
            lines.append(_edge_line(view, len(seen), src, dst, prefix=prefix))
            seen.add((src, dst))
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- rendering ----

def run_dot(dot_text, fmt):
    """DOT text -> the bytes of an image (svg, png, pdf) rendered by Graphviz's `dot`."""
    exe = shutil.which("dot")
    if exe is None:
        raise NetdefError(None, None, None, "Graphviz's `dot` program is not installed",
                          "install it (Debian/Ubuntu: apt-get install graphviz), or draw to .dot or .html")
    try:
        done = subprocess.run([exe, "-T" + fmt], input=dot_text.encode("utf-8"), capture_output=True,
                              timeout=DOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise NetdefError(None, None, None, "Graphviz took over %d s to lay out the net" % DOT_TIMEOUT_S,
                          "draw the blocks only (.html) or a smaller part of the net") from None
    said = done.stderr.decode("utf-8", "replace").strip().splitlines()
    if done.returncode != 0:
        raise NetdefError(None, None, None, "Graphviz's dot failed (exit %d)%s"
                          % (done.returncode, ": " + said[-1][:300] if said else ""))
    if not done.stdout.strip():
        raise NetdefError(None, None, None, "Graphviz's dot (%s) printed nothing for -T%s%s"
                          % (exe, fmt, ": " + said[-1][:300] if said else ""),
                          "check the Graphviz installation (dot -V), or draw to .dot")
    return done.stdout


def _inline_svg(svg_bytes):
    """Graphviz's SVG document -> an <svg> element to paste into HTML."""
    text = svg_bytes.decode("utf-8", "replace")
    if "<svg" not in text:
        raise NetdefError(None, None, None, "Graphviz's dot printed no SVG (it printed %r)" % text[:80],
                          "check the Graphviz installation (dot -Tsvg), or draw to .dot")
    return text[text.index("<svg"):]


def to_html(view, rankdir="TB"):
    expanded = _inline_svg(run_dot(to_dot(view, rankdir, prefix="x_"), "svg"))
    blocks = _inline_svg(run_dot(to_dot_blocks(view, rankdir), "svg")) if view["groups"] else ""
    data = json.dumps(view, sort_keys=True).replace("<", "\\u003c").replace(">", "\\u003e")
    values = {"__TITLE__": _h(view["net"]), "/*NETDEF_DATA*/": data,
              "<!--SVG_EXPANDED-->": expanded, "<!--SVG_BLOCKS-->": blocks}
    # One pass over the template: a value that holds a marker (a net named
    # "/*NETDEF_DATA*/") is never searched again, so it cannot take another's place.
    return re.sub("|".join(map(re.escape, values)), lambda m: values[m.group()],
                  TEMPLATE.read_text(encoding="utf-8"))
