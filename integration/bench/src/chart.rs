//! The results as an SVG bar chart: each configuration's throughput as a
//! fraction of passthrough, Baton rows marked with the level their target
//! requires (the anchor's fraction times the target ratio).

use crate::configs::{Kind, Target};
use crate::report::Row;

const WIDTH: f64 = 960.0;
const LABEL_WIDTH: f64 = 430.0;
const BAR_HEIGHT: f64 = 18.0;
const ROW_HEIGHT: f64 = 26.0;
const TOP: f64 = 56.0;

/// The chart for `rows`.
pub fn svg(rows: &[Row], title: &str) -> String {
    let scale_max =
        rows.iter().map(|row| row.vs_passthrough).filter(|r| r.is_finite()).fold(1.0, f64::max) * 1.1;
    let plot_width = WIDTH - LABEL_WIDTH - 70.0;
    let x = |ratio: f64| LABEL_WIDTH + ratio.max(0.0) / scale_max * plot_width;
    let height = TOP + rows.len() as f64 * ROW_HEIGHT + 50.0;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">{}</text>
<text x="10" y="40" fill="#555">throughput as a fraction of passthrough (same workload); black tick: the level the target requires</text>
"##,
        escape(title)
    );
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        out.push_str(&format!(
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle" fill="#555">{tick:.2}</text>
"##,
            x(tick),
            TOP - 6.0,
            TOP + rows.len() as f64 * ROW_HEIGHT,
            TOP + rows.len() as f64 * ROW_HEIGHT + 16.0
        ));
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + i as f64 * ROW_HEIGHT;
        let color = match row.kind {
            Kind::Passthrough => "#9e9e9e",
            Kind::Floor => "#c7c7c7",
            Kind::Native => "#4c78a8",
            Kind::Baton => "#f58518",
        };
        let ratio = if row.vs_passthrough.is_finite() { row.vs_passthrough } else { 0.0 };
        out.push_str(&format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>
<rect x="{LABEL_WIDTH}" y="{y:.1}" width="{:.1}" height="{BAR_HEIGHT}" fill="{color}"/>
<text x="{:.1}" y="{:.1}">{ratio:.2}</text>
"#,
            LABEL_WIDTH - 8.0,
            y + 13.0,
            escape(row.label),
            x(ratio) - LABEL_WIDTH,
            x(ratio) + 4.0,
            y + 13.0
        ));
        for (anchor, min) in row.targets.iter().filter_map(|(target, _)| match target {
            Target::Ratio { anchor, min } => Some((anchor, min)),
            Target::CpuAbove { .. } | Target::Report { .. } | Target::ReportCpu { .. } => None,
        }) {
            let Some(anchor) = rows.iter().find(|other| other.id == *anchor) else {
                continue;
            };
            let level = anchor.vs_passthrough * min;
            out.push_str(&format!(
                r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="black" stroke-width="2"/>
"#,
                x(level),
                y - 2.0,
                y + BAR_HEIGHT + 2.0
            ));
        }
    }
    let legend_y = height - 14.0;
    for (i, (name, color)) in
        [("passthrough", "#9e9e9e"), ("Envoy native", "#4c78a8"), ("Baton", "#f58518")].iter().enumerate()
    {
        let lx = LABEL_WIDTH + i as f64 * 140.0;
        out.push_str(&format!(
            r#"<rect x="{lx}" y="{:.1}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{legend_y:.1}">{name}</text>
"#,
            legend_y - 10.0,
            lx + 16.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a -> b & <c>"), "a -&gt; b &amp; &lt;c&gt;");
    }
}
