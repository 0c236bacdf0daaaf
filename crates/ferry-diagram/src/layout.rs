//! Top-down tree layout and SVG output.
//!
//! Two passes over the tree: `measure` computes the size of every lane bottom-up, `draw`
//! places blocks top-down, each chain centred on one vertical axis, the lanes of a nested
//! step side by side under it and joined again below them. All coordinates are integers, so
//! the output is the same on every machine.

use std::fmt::Write as _;

use crate::text::{cells, escape, push_escaped, BOLD_CHAR_W, CHAR_W, MONO_CHAR_W};
use crate::tree::{chain_stops, Block, Lane, LaneStyle, Node, Shape, Tree};

const MARGIN: i32 = 16;
const PAD_X: i32 = 12;
const PAD_Y: i32 = 7;
const LINE_H: i32 = 16;
const MIN_BOX_W: i32 = 140;
/// Between two blocks of a chain (room for the arrow).
const V_GAP: i32 = 26;
/// Between two lanes.
const H_GAP: i32 = 28;
/// From a nested step's box to the bus that splits into its lanes, and from there to the lanes.
const SPLIT: i32 = 12;
/// From the bottom of the lanes to the point where they join.
const JOIN: i32 = 14;
/// The band at the top of a lane that holds its label.
const LABEL_H: i32 = 20;
const FRAME_PAD: i32 = 10;
/// Extra room on the left of a loop frame for the loop-back edge, and below its last block.
const LOOP_M: i32 = 12;
const LOOP_B: i32 = 14;
/// Height of an empty lane's content.
const EMPTY_H: i32 = 10;

const FONT: &str = "system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif";
const MONO: &str = "ui-monospace,monospace";

/// Measured sizes, kept beside the tree (indexed by the order `measure` visits lanes).
struct LaneSize {
    w: i32,
    h: i32,
    /// Offset of the lane's axis from its left edge.
    axis: i32,
}

struct Sizes {
    lanes: Vec<LaneSize>,
}

fn node_size(n: &Node<'_>) -> (i32, i32) {
    if n.shape == Shape::End {
        return (72, 28);
    }
    let mut w = cells(&n.name) * BOLD_CHAR_W;
    w = w.max(cells(&n.kind) * MONO_CHAR_W);
    let mut lines = 2;
    if let Some(d) = &n.detail {
        w = w.max(cells(d) * CHAR_W);
        lines += 1;
    }
    ((w + 2 * PAD_X).max(MIN_BOX_W), 2 * PAD_Y + lines * LINE_H)
}

/// Width and height of a chain of blocks whose sizes are known.
fn chain_size(block_sizes: &[(i32, i32)]) -> (i32, i32) {
    let w = block_sizes.iter().map(|s| s.0).max().unwrap_or(0);
    let h: i32 = block_sizes.iter().map(|s| s.1).sum::<i32>()
        + V_GAP * (block_sizes.len() as i32 - 1).max(0);
    (w, h)
}

/// Measure a block (and everything in it); returns its size. The sizes of a block's lanes take
/// consecutive slots, reserved before the lanes' own blocks are measured: the same pre-order
/// `draw_block` takes them in.
fn measure_block(b: &Block<'_>, sizes: &mut Sizes) -> (i32, i32) {
    let (nw, nh) = node_size(&b.node);
    if b.lanes.is_empty() {
        return (nw, nh);
    }
    let first = sizes.lanes.len();
    sizes.lanes.extend(b.lanes.iter().map(|_| LaneSize {
        w: 0,
        h: 0,
        axis: 0,
    }));
    let mut lanes_w = H_GAP * (b.lanes.len() as i32 - 1);
    let mut lanes_h = 0;
    for (i, lane) in b.lanes.iter().enumerate() {
        let block_sizes: Vec<(i32, i32)> =
            lane.chain.iter().map(|c| measure_block(c, sizes)).collect();
        let (cw, ch) = chain_size(&block_sizes);
        let label_w = cells(&lane.label) * CHAR_W;
        let inner = cw.max(2 * (label_w + 8));
        let content_h = if lane.chain.is_empty() { EMPTY_H } else { ch };
        let (left, right, extra_h) = match lane.style {
            LaneStyle::Plain => (0, 0, 0),
            LaneStyle::Loop => (
                FRAME_PAD + LOOP_M,
                FRAME_PAD + LOOP_M,
                2 * FRAME_PAD + LOOP_B,
            ),
            _ => (FRAME_PAD, FRAME_PAD, 2 * FRAME_PAD),
        };
        let s = LaneSize {
            w: left + inner + right,
            h: LABEL_H + content_h + extra_h,
            axis: left + inner / 2,
        };
        lanes_w += s.w;
        lanes_h = lanes_h.max(s.h);
        sizes.lanes[first + i] = s;
    }
    (nw.max(lanes_w), nh + 2 * SPLIT + lanes_h + JOIN)
}

struct Out<'p> {
    p: &'p str,
    frames: String,
    edges: String,
    labels: String,
    nodes: String,
    lane_cursor: usize,
}

/// Where a chain (or block) ends: the y of its exit and the name of what the flow leaves from.
struct Exit {
    y: i32,
    from: String,
    stops: bool,
}

impl Out<'_> {
    fn edge(&mut self, from: &str, to: &str, class: &str, d: &str, arrow: bool) {
        self.edges.push_str("<path class=\"edge");
        if !class.is_empty() {
            self.edges.push(' ');
            self.edges.push_str(class);
        }
        self.edges.push_str("\" data-from=\"");
        push_escaped(&mut self.edges, from);
        self.edges.push_str("\" data-to=\"");
        push_escaped(&mut self.edges, to);
        self.edges.push_str("\" d=\"");
        self.edges.push_str(d);
        self.edges.push('"');
        match class {
            "on-error" => {
                let _ = write!(
                    self.edges,
                    " stroke=\"#b42318\" stroke-dasharray=\"5 3\" marker-end=\"url(#{}-arrow-err)\"",
                    self.p
                );
            }
            "loop-back" => {
                let _ = write!(
                    self.edges,
                    " stroke=\"#6941c6\" marker-end=\"url(#{}-arrow-loop)\"",
                    self.p
                );
            }
            _ if !arrow => self.edges.push_str(" marker-end=\"none\""),
            _ => {}
        }
        self.edges.push_str("/>\n");
    }

    fn node(&mut self, n: &Node<'_>, x: i32, y: i32, w: i32, h: i32) {
        let (fill, stroke) = match n.shape {
            Shape::Trigger => ("#eef4ff", "#3538cd"),
            Shape::Action => ("#fff", "#667085"),
            Shape::Control => ("#f2f4f7", "#475467"),
            Shape::Fail => ("#fef3f2", "#b42318"),
            Shape::Finish => ("#ecfdf3", "#067647"),
            Shape::Retry => ("#fffaeb", "#b54708"),
            Shape::End => ("#f2f4f7", "#475467"),
        };
        let rx = if matches!(
            n.shape,
            Shape::Fail | Shape::Finish | Shape::Retry | Shape::End
        ) {
            h / 2
        } else {
            6
        };
        let o = &mut self.nodes;
        if let Some(href) = &n.href {
            o.push_str("<a href=\"");
            push_escaped(o, href);
            o.push_str("\">");
        }
        match (n.step, n.shape) {
            (Some(step), _) => {
                let _ = write!(
                    o,
                    "<g id=\"{}-n{}\" class=\"node {}",
                    self.p,
                    n.index,
                    n.shape.class()
                );
                if let Some(c) = &n.extra_class {
                    o.push(' ');
                    o.push_str(c);
                }
                o.push_str("\" data-step=\"");
                push_escaped(o, &step.id);
                o.push_str("\">");
            }
            (None, Shape::Trigger) => {
                let _ = write!(
                    o,
                    "<g id=\"{}-trigger\" class=\"node trigger\" data-node=\"trigger\">",
                    self.p
                );
            }
            (None, _) => {
                let _ = write!(
                    o,
                    "<g id=\"{}-end\" class=\"node end\" data-node=\"end\">",
                    self.p
                );
            }
        }
        o.push_str("<title>");
        push_escaped(o, &n.tooltip);
        o.push_str("</title>");
        let _ = write!(
            o,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"{stroke}\"/>"
        );
        let cx = x + w / 2;
        if n.shape == Shape::End {
            let _ = write!(
                o,
                "<text x=\"{cx}\" y=\"{}\" font-weight=\"600\">End</text></g>",
                y + 18
            );
        } else {
            let base = y + PAD_Y + 12;
            let _ = write!(o, "<text x=\"{cx}\" y=\"{base}\" font-weight=\"600\">");
            push_escaped(o, &n.name);
            let _ = write!(
                o,
                "</text><text x=\"{cx}\" y=\"{}\" class=\"kind\" font-family=\"{MONO}\" font-size=\"11\" fill=\"#344054\">",
                base + LINE_H
            );
            push_escaped(o, &n.kind);
            o.push_str("</text>");
            if let Some(d) = &n.detail {
                let _ = write!(
                    o,
                    "<text x=\"{cx}\" y=\"{}\" class=\"detail\" fill=\"#475467\">",
                    base + 2 * LINE_H
                );
                push_escaped(o, d);
                o.push_str("</text>");
            }
            o.push_str("</g>");
        }
        if n.href.is_some() {
            o.push_str("</a>");
        }
        o.push('\n');
    }
}

/// Draw a chain centred on `cx` from `y`; returns where it ends.
fn draw_chain(blocks: &[Block<'_>], cx: i32, mut y: i32, sizes: &Sizes, out: &mut Out<'_>) -> Exit {
    let mut prev: Option<Exit> = None;
    for b in blocks {
        let id = b.node.step.map(|s| s.id.as_str()).unwrap_or_default();
        if let Some(p) = &prev {
            if !p.stops {
                out.edge(&p.from, id, "", &format!("M{cx} {}V{y}", p.y), true);
            }
        }
        let exit = draw_block(b, cx, y, sizes, out);
        y = exit.y + V_GAP;
        prev = Some(exit);
    }
    prev.unwrap_or(Exit {
        y,
        from: String::new(),
        stops: false,
    })
}

fn draw_block(b: &Block<'_>, cx: i32, y0: i32, sizes: &Sizes, out: &mut Out<'_>) -> Exit {
    let (nw, nh) = node_size(&b.node);
    out.node(&b.node, cx - nw / 2, y0, nw, nh);
    let id = b.node.step.map(|s| s.id.as_str()).unwrap_or_default();
    if b.lanes.is_empty() {
        return Exit {
            y: y0 + nh,
            from: id.to_string(),
            stops: b.node.shape.stops(),
        };
    }
    // The lanes' sizes were pushed in the same pre-order this pass visits them in.
    let first = out.lane_cursor;
    out.lane_cursor += b.lanes.len();
    let lane_sizes = &sizes.lanes[first..first + b.lanes.len()];
    let lanes_w: i32 =
        lane_sizes.iter().map(|s| s.w).sum::<i32>() + H_GAP * (b.lanes.len() as i32 - 1);
    let lanes_h = lane_sizes.iter().map(|s| s.h).max().unwrap_or(0);
    let bottom = y0 + nh;
    let split_y = bottom + SPLIT;
    let top = split_y + SPLIT;
    let merge_y = top + lanes_h + JOIN;
    let join = format!("{id}:join");
    let mut x = cx - lanes_w / 2;
    let mut joined = 0;
    let mut try_frame: Option<(i32, i32)> = None;
    for (lane, s) in b.lanes.iter().zip(lane_sizes) {
        let lcx = x + s.axis;
        draw_lane_frame(lane, x, top, s, out);
        // The label, right of the lane's entry line.
        let _ = write!(
            out.labels,
            "<text x=\"{}\" y=\"{}\" class=\"{}\" fill=\"{}\">",
            lcx + 6,
            top + 14,
            lane.style.class(),
            match lane.style {
                LaneStyle::Loop => "#53389e",
                LaneStyle::Catch => "#912018",
                _ => "#344054",
            }
        );
        push_escaped(&mut out.labels, &lane.label);
        out.labels.push_str("</text>\n");
        let first_top = top + LABEL_H + if lane.style.framed() { FRAME_PAD } else { 0 };
        let class = lane.style.class().trim_start_matches("lane").trim();
        match lane.chain.first() {
            None => {
                out.edge(
                    id,
                    &join,
                    class,
                    &format!("M{cx} {bottom}V{split_y}H{lcx}V{merge_y}H{cx}"),
                    false,
                );
                joined += 1;
            }
            Some(f) => {
                let fid = f.node.step.map(|s| s.id.as_str()).unwrap_or_default();
                out.edge(
                    id,
                    fid,
                    class,
                    &format!("M{cx} {bottom}V{split_y}H{lcx}V{first_top}"),
                    true,
                );
                let exit = draw_chain(&lane.chain, lcx, first_top, sizes, out);
                if !exit.stops {
                    out.edge(
                        &exit.from,
                        &join,
                        class,
                        &format!("M{lcx} {}V{merge_y}H{cx}", exit.y),
                        false,
                    );
                    joined += 1;
                    if lane.style == LaneStyle::Loop {
                        let ly = exit.y + LOOP_B / 2 + 2;
                        let lx = x + FRAME_PAD / 2 + LOOP_M / 2 + 2;
                        let ay = top + LABEL_H + FRAME_PAD / 2;
                        out.edge(
                            &exit.from,
                            fid,
                            "loop-back",
                            &format!("M{lcx} {}V{ly}H{lx}V{ay}H{}", exit.y, lcx - 2),
                            true,
                        );
                    }
                }
            }
        }
        match lane.style {
            LaneStyle::Try => try_frame = Some((x + s.w, top)),
            LaneStyle::Catch => {
                if let Some((tx, _)) = try_frame.take() {
                    out.edge(
                        &format!("{id}:try"),
                        &format!("{id}:catch"),
                        "on-error",
                        &format!("M{tx} {}H{}", top + 10, x - 2),
                        true,
                    );
                }
            }
            _ => {}
        }
        x += s.w + H_GAP;
    }
    if joined >= 2 {
        let _ = writeln!(
            out.edges,
            "<circle class=\"join\" cx=\"{cx}\" cy=\"{merge_y}\" r=\"3\" fill=\"#667085\" stroke=\"none\"/>"
        );
    }
    Exit {
        y: merge_y,
        from: join,
        stops: b.stops(),
    }
}

fn draw_lane_frame(lane: &Lane<'_>, x: i32, y: i32, s: &LaneSize, out: &mut Out<'_>) {
    let (fill, stroke, dash) = match lane.style {
        LaneStyle::Plain => return,
        LaneStyle::Loop => ("#f9f5ff", "#6941c6", Some("6 4")),
        LaneStyle::Try => ("#f8f9fc", "#475467", None),
        LaneStyle::Catch => ("#fef3f2", "#b42318", None),
        LaneStyle::Group => ("none", "#98a2b3", Some("4 4")),
    };
    let _ = write!(
        out.frames,
        "<rect class=\"{}\" x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" rx=\"8\" fill=\"{fill}\" stroke=\"{stroke}\"",
        lane.style.class(),
        s.w,
        s.h
    );
    if let Some(d) = dash {
        let _ = write!(out.frames, " stroke-dasharray=\"{d}\"");
    }
    out.frames.push_str("/>\n");
}

/// The whole SVG document.
pub(crate) fn render(
    tree: &Tree<'_>,
    name: &str,
    description: Option<&str>,
    prefix: &str,
) -> String {
    let mut sizes = Sizes { lanes: Vec::new() };
    let block_sizes: Vec<(i32, i32)> = tree
        .steps
        .iter()
        .map(|b| measure_block(b, &mut sizes))
        .collect();
    let (cw, _) = chain_size(&block_sizes);
    let (tw, th) = node_size(&tree.trigger);
    let end = crate::tree::Node {
        step: None,
        index: 0,
        shape: Shape::End,
        name: String::new(),
        kind: String::new(),
        detail: None,
        tooltip: "End of the job".to_string(),
        href: None,
        extra_class: None,
    };
    let (ew, eh) = node_size(&end);
    let inner_w = cw.max(tw).max(ew);
    let cx = MARGIN + inner_w / 2;

    let mut out = Out {
        p: prefix,
        frames: String::new(),
        edges: String::with_capacity(tree.step_count * 120),
        labels: String::new(),
        nodes: String::with_capacity(tree.step_count * 480),
        lane_cursor: 0,
    };
    out.node(&tree.trigger, cx - tw / 2, MARGIN, tw, th);
    let first_y = MARGIN + th + V_GAP;
    if let Some(f) = tree.steps.first() {
        let fid = f.node.step.map(|s| s.id.as_str()).unwrap_or_default();
        out.edge(
            "trigger",
            fid,
            "",
            &format!("M{cx} {}V{first_y}", MARGIN + th),
            true,
        );
    }
    let exit = if tree.steps.is_empty() {
        // Not a loadable runbook, but drawn all the same: the trigger leads to the end.
        Exit {
            y: MARGIN + th,
            from: "trigger".to_string(),
            stops: false,
        }
    } else {
        draw_chain(&tree.steps, cx, first_y, &sizes, &mut out)
    };
    let mut bottom = exit.y;
    if !chain_stops(&tree.steps) {
        let ey = exit.y + V_GAP;
        out.edge(
            &exit.from,
            "end",
            "",
            &format!("M{cx} {}V{ey}", exit.y),
            true,
        );
        out.node(&end, cx - ew / 2, ey, ew, eh);
        bottom = ey + eh;
    }
    let width = inner_w + 2 * MARGIN;
    let height = bottom + MARGIN;

    let mut svg = String::with_capacity(
        out.frames.len() + out.edges.len() + out.labels.len() + out.nodes.len() + 2048,
    );
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"{prefix}-title {prefix}-desc\" \
         class=\"ferry-diagram\" data-runbook=\"{}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         font-family=\"{FONT}\" font-size=\"12\">",
        escape(name)
    );
    let _ = write!(svg, "<title id=\"{prefix}-title\">Runbook ");
    push_escaped(&mut svg, name);
    if let Some(d) = description {
        svg.push_str(": ");
        push_escaped(&mut svg, d);
    }
    let _ = write!(svg, "</title>\n<desc id=\"{prefix}-desc\">");
    push_escaped(&mut svg, &crate::tree::outline(tree));
    svg.push_str("</desc>\n<defs>");
    for (suffix, color) in [
        ("arrow", "#667085"),
        ("arrow-err", "#b42318"),
        ("arrow-loop", "#6941c6"),
    ] {
        let _ = write!(
            svg,
            "<marker id=\"{prefix}-{suffix}\" viewBox=\"0 0 8 8\" refX=\"7\" refY=\"4\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0 0L8 4L0 8z\" fill=\"{color}\"/></marker>"
        );
    }
    svg.push_str("</defs>\n<g class=\"frames\">\n");
    svg.push_str(&out.frames);
    let _ = write!(
        svg,
        "</g>\n<g class=\"edges\" fill=\"none\" stroke=\"#667085\" stroke-width=\"1.5\" marker-end=\"url(#{prefix}-arrow)\">\n"
    );
    svg.push_str(&out.edges);
    svg.push_str("</g>\n<g class=\"labels\" font-size=\"11\">\n");
    svg.push_str(&out.labels);
    svg.push_str(
        "</g>\n<g class=\"nodes\" text-anchor=\"middle\" fill=\"#101828\" stroke-width=\"1.5\">\n",
    );
    svg.push_str(&out.nodes);
    svg.push_str("</g>\n</svg>\n");
    svg
}
