//! The UI's bar charts, drawn on the server as inline SVG (no script): counts per time bucket
//! stacked by a key (a run's status, a refusal's reason), with a legend, axis labels, a
//! `<title>` per bar for the exact count, and `data-*` attributes a test can read.

use std::fmt::Write as _;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// How far back a chart looks, and how wide its bars are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum ChartWindow {
    /// The last hour, a bar per minute.
    #[default]
    Hour,
    /// The last 24 hours, a bar per 15 minutes.
    Day,
}

impl ChartWindow {
    /// `?window=day`; anything else is the hour (the UI reads its links leniently).
    pub(super) fn parse(text: Option<&str>) -> Self {
        match text {
            Some("day") => Self::Day,
            _ => Self::Hour,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub(super) fn bucket(self) -> TimeDelta {
        match self {
            Self::Hour => TimeDelta::minutes(1),
            Self::Day => TimeDelta::minutes(15),
        }
    }

    fn buckets(self) -> usize {
        match self {
            Self::Hour => 60,
            Self::Day => 96,
        }
    }

    /// "last hour, per minute", for titles.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Self::Hour => "last hour, per minute",
            Self::Day => "last 24 hours, per 15 minutes",
        }
    }

    /// The buckets ending with the one `now` is in (so the current minute is the last bar).
    pub(super) fn span(self, now: DateTime<Utc>) -> Span {
        let bucket = self.bucket();
        let current = now.duration_trunc(bucket).unwrap_or(now);
        Span {
            end: current + bucket,
            bucket,
            buckets: self.buckets(),
        }
    }
}

/// Consecutive buckets of equal width ending at `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub end: DateTime<Utc>,
    pub bucket: TimeDelta,
    pub buckets: usize,
}

impl Span {
    pub(super) fn start(&self) -> DateTime<Utc> {
        self.end - self.bucket * i32::try_from(self.buckets).unwrap_or(i32::MAX)
    }

    /// The bucket a time falls in, if it falls in the span.
    fn index_of(&self, at: DateTime<Utc>) -> Option<usize> {
        if at < self.start() || at >= self.end {
            return None;
        }
        let offset = (at - self.start()).num_milliseconds();
        usize::try_from(offset / self.bucket.num_milliseconds().max(1)).ok()
    }

    fn bucket_start(&self, index: usize) -> DateTime<Utc> {
        self.start() + self.bucket * i32::try_from(index).unwrap_or(i32::MAX)
    }
}

/// One stacked key of a chart: its name and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    pub name: &'static str,
    pub colour: &'static str,
}

/// Counts per bucket and key, ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BarChart {
    /// The element's id, e.g. `runs-chart`.
    pub id: &'static str,
    /// What is counted, e.g. "Runs by status"; the start of the accessible label.
    pub title: String,
    /// The `data-*` attribute naming a bar's key: `status` or `reason`.
    pub key_attribute: &'static str,
    /// What one item is called in hover texts: "runs", "refusals".
    pub unit: &'static str,
    pub window: ChartWindow,
    pub span: Span,
    /// Every key a bar may have, in stacking order (bottom first).
    pub keys: Vec<Key>,
    /// `counts[bucket][key]`, as `keys` orders them.
    pub counts: Vec<Vec<u64>>,
}

impl BarChart {
    /// Counts of `(time, key, count)` summed into the span's buckets; times outside the span
    /// and keys not in `keys` are left out.
    pub(super) fn tally<'a>(
        header: ChartHeader,
        span: Span,
        keys: Vec<Key>,
        counts: impl IntoIterator<Item = (DateTime<Utc>, &'a str, u64)>,
    ) -> Self {
        let mut table = vec![vec![0; keys.len()]; span.buckets];
        for (at, name, count) in counts {
            let key = keys.iter().position(|k| k.name == name);
            if let (Some(bucket), Some(key)) = (span.index_of(at), key) {
                table[bucket][key] += count;
            }
        }
        Self {
            id: header.id,
            title: header.title,
            key_attribute: header.key_attribute,
            unit: header.unit,
            window: header.window,
            span,
            keys,
            counts: table,
        }
    }

    /// The sum for each key over the whole span, as `keys` orders them.
    pub(super) fn totals(&self) -> Vec<u64> {
        (0..self.keys.len())
            .map(|k| self.counts.iter().map(|bucket| bucket[k]).sum())
            .collect()
    }

    /// The chart as an `<svg>` element, everything in it escaped.
    pub(super) fn svg(&self) -> String {
        let axis = axis_max(
            self.counts
                .iter()
                .map(|b| b.iter().sum())
                .max()
                .unwrap_or(0),
        );
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg id="{id}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" data-window="{window}" data-bucket-minutes="{minutes}" data-axis-max="{axis}">"#,
            id = self.id,
            label = escape(&self.label()),
            window = self.window.as_str(),
            minutes = self.span.bucket.num_minutes(),
        );
        self.draw_legend(&mut svg);
        self.draw_axes(&mut svg, axis);
        self.draw_bars(&mut svg, axis);
        svg.push_str("</svg>");
        svg
    }

    /// The accessible label: what, over when, and the totals per key.
    fn label(&self) -> String {
        let totals = self.totals();
        let all: u64 = totals.iter().sum();
        let parts: Vec<String> = self
            .keys
            .iter()
            .zip(&totals)
            .filter(|(_, n)| **n > 0)
            .map(|(key, n)| format!("{n} {}", key.name))
            .collect();
        if parts.is_empty() {
            format!(
                "{}, {}: no {}",
                self.title,
                self.window.describe(),
                self.unit
            )
        } else {
            format!(
                "{}, {}: {all} {} ({})",
                self.title,
                self.window.describe(),
                self.unit,
                parts.join(", ")
            )
        }
    }

    /// A swatch and a name per key seen in the span (all of them when none is).
    fn draw_legend(&self, svg: &mut String) {
        let totals = self.totals();
        let seen: Vec<&Key> = self
            .keys
            .iter()
            .zip(&totals)
            .filter(|(_, n)| **n > 0)
            .map(|(k, _)| k)
            .collect();
        svg.push_str(r#"<g class="legend">"#);
        let mut x = LEFT;
        for key in seen {
            let _ = write!(
                svg,
                r##"<rect class="swatch" x="{x:.0}" y="4" width="10" height="10" fill="{colour}"/><text x="{tx:.0}" y="13" font-size="12" fill="#1f2328">{name}</text>"##,
                colour = key.colour,
                tx = x + 14.0,
                name = escape(key.name),
            );
            x += 14.0 + 7.0 * key.name.len() as f64 + 16.0;
        }
        svg.push_str("</g>");
    }

    /// The y axis (0, the middle, the top) and time labels under the bars, in UTC.
    fn draw_axes(&self, svg: &mut String, axis: u64) {
        svg.push_str(r##"<g class="axes" font-size="11" fill="#667085">"##);
        let mut ticks = vec![0, axis];
        if axis.is_multiple_of(2) {
            ticks.insert(1, axis / 2);
        }
        for tick in ticks {
            let y = BOTTOM - tick as f64 / axis as f64 * (BOTTOM - TOP);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.2}" x2="{RIGHT}" y2="{y:.2}" stroke="#e4e4e0"/><text class="y-label" x="{lx}" y="{ty:.2}" text-anchor="end">{tick}</text>"##,
                lx = LEFT - 6.0,
                ty = y + 4.0,
            );
        }
        let every = self.span.buckets.div_ceil(6).max(1);
        for index in (0..self.span.buckets).step_by(every) {
            let x = LEFT + index as f64 * self.slot();
            let _ = write!(
                svg,
                r#"<text class="x-label" x="{x:.2}" y="{y}">{time}</text>"#,
                y = BOTTOM + 16.0,
                time = self.span.bucket_start(index).format("%H:%M"),
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{RIGHT}" y="{y}" text-anchor="end">UTC</text></g>"#,
            y = BOTTOM + 16.0
        );
    }

    fn slot(&self) -> f64 {
        (RIGHT - LEFT) / self.span.buckets.max(1) as f64
    }

    /// One `<rect>` per bucket and key with a count, stacked from the bottom in key order.
    fn draw_bars(&self, svg: &mut String, axis: u64) {
        svg.push_str(r#"<g class="bars">"#);
        for (index, bucket) in self.counts.iter().enumerate() {
            let start = self.span.bucket_start(index);
            let geometry = bar_geometry(bucket, axis, index, self.slot());
            for ((key, count), bar) in self.keys.iter().zip(bucket).zip(geometry) {
                let Some(bar) = bar else { continue };
                let _ = write!(
                    svg,
                    r#"<rect class="bar" x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="{colour}" data-bucket="{bucket}" data-{attribute}="{name}" data-count="{count}"><title>{from}–{to} UTC: {count} {name} {unit}</title></rect>"#,
                    x = bar.x,
                    y = bar.y,
                    w = bar.width,
                    h = bar.height,
                    colour = key.colour,
                    bucket = start.format("%Y-%m-%dT%H:%MZ"),
                    attribute = self.key_attribute,
                    name = escape(key.name),
                    from = start.format("%H:%M"),
                    to = (start + self.span.bucket).format("%H:%M"),
                    unit = self.unit,
                );
            }
        }
        svg.push_str("</g>");
    }
}

/// What a chart says about itself, apart from its data.
pub(super) struct ChartHeader {
    pub id: &'static str,
    pub title: String,
    pub key_attribute: &'static str,
    pub unit: &'static str,
    pub window: ChartWindow,
}

/// The drawing area, in the view box's units.
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = WIDTH - 8.0;
const TOP: f64 = 26.0;
const BOTTOM: f64 = HEIGHT - 24.0;

/// One bar segment's place.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bar {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

/// The segments of bucket `index` stacked bottom up, each as tall as its count is of `axis`;
/// `None` for a count of zero.
fn bar_geometry(counts: &[u64], axis: u64, index: usize, slot: f64) -> Vec<Option<Bar>> {
    let scale = (BOTTOM - TOP) / axis.max(1) as f64;
    let width = (slot * 0.8).max(1.0);
    let x = LEFT + index as f64 * slot + (slot - width) / 2.0;
    let mut below = 0;
    counts
        .iter()
        .map(|&count| {
            if count == 0 {
                return None;
            }
            let bar = Bar {
                x,
                y: BOTTOM - (below + count) as f64 * scale,
                width,
                height: count as f64 * scale,
            };
            below += count;
            Some(bar)
        })
        .collect()
}

/// The top of the y axis: the tallest bar rounded up to 1, 2 or 5 times a power of ten, so
/// the labels are round numbers (1 for an empty chart).
fn axis_max(tallest: u64) -> u64 {
    let mut power = 1u64;
    loop {
        for step in [1, 2, 5] {
            let candidate = step * power;
            if candidate >= tallest {
                return candidate;
            }
        }
        power = match power.checked_mul(10) {
            Some(next) => next,
            None => return tallest,
        };
    }
}

/// Text for SVG content and attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn keys() -> Vec<Key> {
        vec![
            Key {
                name: "succeeded",
                colour: "#1a7f37",
            },
            Key {
                name: "failed",
                colour: "#b42318",
            },
        ]
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, s).unwrap()
    }

    fn chart(counts: Vec<(DateTime<Utc>, &str, u64)>) -> BarChart {
        let span = ChartWindow::Hour.span(at(18, 30, 20));
        let header = ChartHeader {
            id: "runs-chart",
            title: "Runs by status".into(),
            key_attribute: "status",
            unit: "runs",
            window: ChartWindow::Hour,
        };
        BarChart::tally(header, span, keys(), counts)
    }

    /// The `(attribute, value)` pairs of every bar in the SVG, in order.
    fn bars(svg: &str) -> Vec<(String, String, u64, f64)> {
        svg.split("<rect class=\"bar\"")
            .skip(1)
            .map(|rect| {
                let attr = |name: &str| {
                    let start = rect.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
                    rect[start..].split('"').next().expect("value").to_owned()
                };
                (
                    attr("data-bucket"),
                    attr("data-status"),
                    attr("data-count").parse().expect("count"),
                    attr("height").parse().expect("height"),
                )
            })
            .collect()
    }

    #[test]
    fn windows_end_with_the_current_bucket() {
        let hour = ChartWindow::Hour.span(at(18, 30, 20));
        assert_eq!(hour.end, at(18, 31, 0));
        assert_eq!(hour.start(), at(17, 31, 0));
        assert_eq!(hour.index_of(at(18, 30, 59)), Some(59));
        assert_eq!(hour.index_of(at(17, 31, 0)), Some(0));
        assert_eq!(hour.index_of(at(17, 30, 59)), None);
        assert_eq!(hour.index_of(at(18, 31, 0)), None);
        let day = ChartWindow::Day.span(at(18, 30, 20));
        assert_eq!(day.end, at(18, 45, 0));
        assert_eq!(day.end - day.start(), TimeDelta::days(1));
        assert_eq!(day.index_of(at(18, 44, 0)), Some(95));
        assert_eq!(ChartWindow::parse(Some("day")), ChartWindow::Day);
        assert_eq!(ChartWindow::parse(Some("week")), ChartWindow::Hour);
    }

    #[test]
    fn minutes_are_summed_into_their_buckets_and_strays_left_out() {
        let chart = chart(vec![
            (at(18, 30, 0), "succeeded", 3),
            (at(18, 30, 0), "failed", 1),
            (at(18, 29, 0), "succeeded", 2),
            (at(17, 0, 0), "succeeded", 50),
            (at(18, 30, 0), "queued", 9),
        ]);
        assert_eq!(chart.counts[59], vec![3, 1]);
        assert_eq!(chart.counts[58], vec![2, 0]);
        assert_eq!(chart.totals(), vec![5, 1]);
        let span = ChartWindow::Day.span(at(18, 30, 20));
        let header = ChartHeader {
            id: "c",
            title: "t".into(),
            key_attribute: "status",
            unit: "runs",
            window: ChartWindow::Day,
        };
        let day = BarChart::tally(
            header,
            span,
            keys(),
            [(at(18, 30, 0), "failed", 1), (at(18, 44, 0), "failed", 2)],
        );
        assert_eq!(
            day.counts[95],
            vec![0, 3],
            "a 15-minute bucket sums its minutes"
        );
    }

    #[test]
    fn bar_heights_are_proportional_to_counts_and_stack() {
        let svg = chart(vec![
            (at(18, 30, 0), "succeeded", 4),
            (at(18, 30, 0), "failed", 1),
            (at(18, 29, 0), "succeeded", 2),
        ])
        .svg();
        let bars = bars(&svg);
        assert_eq!(bars.len(), 3, "{svg}");
        assert_eq!(bars[0].0, "2026-12-07T18:29Z");
        assert_eq!((bars[0].1.as_str(), bars[0].2), ("succeeded", 2));
        assert_eq!((bars[2].1.as_str(), bars[2].2), ("failed", 1));
        // The axis tops at 5: 4 + 1 fill the plot, and heights keep the counts' ratios.
        assert!(svg.contains("data-axis-max=\"5\""));
        let plot = BOTTOM - TOP;
        assert!((bars[1].3 - plot * 4.0 / 5.0).abs() < 0.01, "{bars:?}");
        assert!((bars[1].3 / bars[0].3 - 2.0).abs() < 0.01);
        assert!((bars[1].3 / bars[2].3 - 4.0).abs() < 0.01);
        let geometry = bar_geometry(&[4, 1], 5, 59, 10.0);
        let (low, high) = (geometry[0].unwrap(), geometry[1].unwrap());
        assert!(
            (high.y + high.height - low.y).abs() < 1e-9,
            "stacked without a gap"
        );
        assert!(svg.contains("<title>18:30–18:31 UTC: 1 failed runs</title>"));
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(
            "aria-label=\"Runs by status, last hour, per minute: 7 runs (6 succeeded, 1 failed)\""
        ));
    }

    #[test]
    fn an_empty_chart_draws_no_bar_and_says_so() {
        let svg = chart(Vec::new()).svg();
        assert!(bars(&svg).is_empty());
        assert!(svg.contains("no runs"), "{svg}");
        assert!(svg.contains("data-axis-max=\"1\""));
        assert!(svg.contains("<text class=\"x-label\""));
    }

    #[test]
    fn one_bucket_dominating_sets_the_axis_and_the_others_keep_their_proportion() {
        let svg = chart(vec![
            (at(18, 30, 0), "succeeded", 1000),
            (at(18, 0, 0), "succeeded", 1),
        ])
        .svg();
        let bars = bars(&svg);
        assert_eq!(bars.len(), 2);
        assert!(svg.contains("data-axis-max=\"1000\""));
        let plot = BOTTOM - TOP;
        assert!(
            (bars[1].3 - plot).abs() < 0.01,
            "the tall one fills the plot"
        );
        assert!((bars[0].3 - plot / 1000.0).abs() < 0.001);
        assert!(bars[0].3 > 0.0);
    }

    #[test]
    fn axis_tops_are_round_and_names_escaped() {
        assert_eq!(
            [0, 1, 2, 3, 6, 10, 11, 999].map(axis_max),
            [1, 1, 2, 5, 10, 10, 20, 1000]
        );
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
