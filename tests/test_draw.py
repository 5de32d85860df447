"""netdef draw: Graphviz pictures and the offline HTML page, checked in headless Chromium.

The page is loaded from a file:// URL with `#click=LAYER` (the page clicks that layer's box
through its own click handler) and Chromium's --dump-dom gives the DOM after the scripts
ran: the details panel must show the layer's parameters, shape, params and MACs.
"""
import os
import re
import shutil
import subprocess

from xml.etree import ElementTree

import pytest

import netdef
from compiler import pipeline
from compiler.backends import draw
from compiler.state import NetState
from netdef.cli import main
from tests.conftest import CORPUS
from tests.nets import BROKEN, HEADER, layer, write_net

NET = '''name: "tiny"
input: "data"
input_shape { dim: 2 dim: 3 dim: 32 dim: 32 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 16 kernel_size: 5 stride: 2 pad: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "drop1" type: "Dropout" bottom: "conv1" top: "conv1" include { phase: TRAIN } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 10 } }
'''

# The tests install nothing: `make test-deps` (which .ci/run calls) installs Graphviz and
# Chromium from Debian; where they are missing these tests skip and say so.
@pytest.fixture(scope="session")
def dot():
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's `dot` is not installed (`make test-deps` or `apt-get install graphviz`)")


@pytest.fixture(scope="session")
def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium is not installed (`make test-deps` or `apt-get install chromium`)")
    return exe


def view_of(path, phase="TEST"):
    state = NetState(phase)
    net = pipeline.read(path)
    errors = pipeline.check(net, state)
    return draw.build_view(net, errors), errors


def test_in_place_layers_fold_into_the_layer_they_follow(tmp_path):
    view, errors = view_of(write_net(tmp_path, NET))
    assert not errors
    assert [n["name"] for n in view["nodes"]] == ["input", "conv1", "pool1", "fc"]
    conv = view["nodes"][1]
    assert [x["name"] for x in conv["layers"]] == ["conv1", "relu1"]
    assert conv["outputs"] == [[2, 16, 16, 16]]
    assert conv["params"] == 16 * 3 * 25 + 16 and conv["macs"] == 16 * 3 * 25 * 16 * 16
    assert [(e["src"], e["dst"]) for e in view["edges"]] == [("input", "conv1"), ("conv1", "pool1"), ("pool1", "fc")]
    # The phase decides what is drawn: TRAIN adds the Dropout, folded into conv1 as well.
    train, _ = view_of(write_net(tmp_path, NET), "TRAIN")
    assert [x["name"] for x in train["nodes"][1]["layers"]] == ["conv1", "relu1", "drop1"]


def test_boxes_show_type_key_params_and_shape(tmp_path):
    view, _ = view_of(write_net(tmp_path, NET))
    text = draw.to_dot(view, "LR", show_lr_mult=True)
    assert "rankdir=LR;" in text
    assert "Convolution k5 s2 p2, 16 out" in text and "+ ReLU" in text
    assert "Pooling MAX k2 s2 p0" in text and "InnerProduct 10 out" in text
    assert "2x16x16x16" in text and "2x16x8x8" in text and "2x10" in text
    assert "lr_mult 1, 2" in text
    assert "lr_mult" not in draw.to_dot(view)


def test_draw_svg_and_png(tmp_path, dot, capsys):
    net = write_net(tmp_path, NET)
    assert main(["draw", str(net), "-o", str(tmp_path / "net.svg"), "--rankdir", "LR"]) == 0
    svg = (tmp_path / "net.svg").read_text()
    assert "<svg" in svg and "conv1" in svg and "Convolution k5 s2 p2, 16 out" in svg
    assert main(["draw", str(net), "-o", str(tmp_path / "net.png"), "--phase", "train"]) == 0
    assert (tmp_path / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["draw", str(net), "-o", str(tmp_path / "net.dot")]) == 0
    assert (tmp_path / "net.dot").read_text().startswith("digraph net {")


# Caffe takes any string as a layer name; these would break DOT, XML or the ids of the picture.
ODD_NAMES = ["conv1", "a'b", 'q"t', "a&b", "<x>", "back\\", "\u00b2", "sp ace", "n--x", "graph0", "edge1",
             "~g0", "&amp;", "x_y/z", "__proto__"]


def test_svg_node_ids_and_titles_are_the_layer_names(tmp_path, dot):
    def quoted(name):
        return name.replace("\\", "\\\\").replace('"', '\\"')
    text = HEADER
    for i, name in enumerate(ODD_NAMES):
        text += layer(quoted(name), "Convolution", ["data" if i == 0 else "b%d" % (i - 1)],
                      "convolution_param { num_output: 3 kernel_size: 1 }", tops=["b%d" % i])
    out = tmp_path / "odd.svg"
    assert main(["draw", str(write_net(tmp_path, text)), "-o", str(out)]) == 0
    root = ElementTree.parse(out).getroot()
    svg = "{http://www.w3.org/2000/svg}"
    nodes = {g.get("id"): g.find(svg + "title").text for g in root.iter(svg + "g") if g.get("class") == "node"}
    assert nodes == {name: name for name in ["input"] + ODD_NAMES}
    ids = [g.get("id") for g in root.iter(svg + "g")]
    assert len(ids) == len(set(ids)), "the edges' and the graph's ids must not take a layer's"


def test_broken_net_still_draws_with_its_problems_marked(tmp_path, dot, capsys):
    net = write_net(tmp_path, BROKEN)
    view, errors = view_of(net)
    assert {e.layer for e in errors} == {"conv2", "sum"}
    by_name = {n["name"]: n for n in view["nodes"]}
    assert by_name["conv2"]["error"] and by_name["sum"]["error"] and not by_name["conv1"]["error"]
    assert by_name["after2"]["outputs"] == [None]          # below the failure: shape unknown
    assert view["missing"] == [{"id": "~m0", "blob": "conv_1"}]
    out = tmp_path / "broken.svg"
    assert main(["draw", str(net), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 problem(s) marked" in captured.out
    assert captured.err.count("warning: ") == 2 and "layer 'conv2'" in captured.err
    svg = out.read_text()
    assert svg.count(draw.ERROR_COLOR) >= 3               # two boxes and the missing blob
    assert "unknown bottom blob" in svg and "missing blob" in svg


def test_draw_refuses_what_it_cannot_write(tmp_path, capsys):
    net = write_net(tmp_path, NET)
    assert main(["draw", str(net), "-o", str(tmp_path / "net.jpeg")]) == 1
    bad = write_net(tmp_path, NET.replace("num_output: 10", "num_output: ten"), "bad.prototxt")
    assert main(["draw", str(bad), "-o", str(tmp_path / "bad.svg")]) == 1
    assert sorted(os.listdir(tmp_path)) == ["bad.prototxt", "net.prototxt"]
    assert "bad.prototxt:11:101: syntax error" in capsys.readouterr().err


def test_groups_by_name_prefix():
    nodes = [{"name": n, "id": "n%d" % i, "layers": [{"type": "Convolution"}], "outputs": [[1]],
              "params": 1, "macs": 1, "error": False}
             for i, n in enumerate(["data", "res2a_branch1", "res2a_branch2a", "res2a", "res2b_branch2a",
                                    "res2b", "inception_3a/1x1", "inception_3a/output", "fc"])]
    groups = draw._groups(nodes, "~")
    assert [(g["name"], len(g["nodes"])) for g in groups] == [("res2a", 3), ("res2b", 2), ("inception_3a", 2)]
    assert "group" not in nodes[0] and "group" not in nodes[-1]


def test_html_is_self_contained(tmp_path, dot):
    net = write_net(tmp_path, NET)
    assert main(["draw", str(net), "-o", str(tmp_path / "net.html")]) == 0
    page = (tmp_path / "net.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert page.count("<svg") == 1      # no repeated blocks here: one layout


def chromium_dom(exe, page, fragment, tmp_path, screenshot=None):
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--user-data-dir=%s" % (tmp_path / "chromium-profile"), "--window-size=1400,900",
            "--virtual-time-budget=5000"]
    url = page.resolve().as_uri() + "#" + fragment
    if screenshot:
        subprocess.run(args + ["--screenshot=%s" % screenshot, url], capture_output=True, timeout=120)
    done = subprocess.run(args + ["--dump-dom", url], capture_output=True, timeout=120)
    return done.stdout.decode("utf-8")


def details(dom):
    m = re.search(r'<aside id="details"(.*?)</aside>', dom, re.S)
    assert m, "no details panel in the page"
    return m.group(0)


def test_clicking_a_layer_shows_its_details(tmp_path, dot, chromium):
    page = tmp_path / "tiny.html"
    assert main(["draw", str(write_net(tmp_path, NET)), "-o", str(page)]) == 0
    shot = tmp_path / "tiny.png"
    panel = details(chromium_dom(chromium, page, "click=conv1", tmp_path, screenshot=shot))
    assert 'data-selected="conv1"' in panel
    assert "Convolution" in panel and "num_output: 16" in panel and "kernel_size: 5" in panel
    assert "2×16×16×16" in panel
    assert "1,216" in panel and "307,200" in panel                 # params, MACs per image
    assert "in place: relu1 (ReLU)" in panel
    assert shot.stat().st_size > 10_000


def test_page_marks_the_failing_layer(tmp_path, dot, chromium):
    page = tmp_path / "broken.html"
    assert main(["draw", str(write_net(tmp_path, BROKEN)), "-o", str(page)]) == 0
    dom = chromium_dom(chromium, page, "click=sum", tmp_path)
    panel = details(dom)
    assert 'data-selected="sum"' in panel and 'class="error"' in panel
    assert "Eltwise needs bottoms of one shape" in panel
    overview = details(chromium_dom(chromium, page, "", tmp_path))
    assert "2 problem(s)" in overview and "unknown bottom blob" in overview


@pytest.mark.skipif(not (CORPUS / "resnet").is_dir(), reason="../shared/caffe-corpus is absent")
def test_resnet_page_collapses_blocks(tmp_path, dot, chromium):
    page = tmp_path / "resnet.html"
    net = CORPUS / "resnet" / "ResNet-50-deploy.prototxt"
    assert main(["draw", str(net), "-o", str(page)]) == 0
    shot = tmp_path / "resnet.png"
    panel = details(chromium_dom(chromium, page, "view=blocks&select=res3b", tmp_path, screenshot=shot))
    assert 'data-selected="res3b"' in panel and "block of 13 layers" in panel
    assert "res3b_branch2a" in panel and "1×512×28×28" in panel
    # The block's totals are its layers' totals.
    parsed = netdef.parse(net)
    from compiler.backends.summary import summarize
    rows, _ = summarize(parsed)
    params = sum(r["params"] for r in rows if re.match(r"(res|bn|scale)3b(_|$)", r["name"]))
    assert "{:,}".format(params) in panel
    assert shot.stat().st_size > 10_000
