//! What the pages' charts show: runs per bucket by status (all workflows or one) with their
//! p50/p95 durations, read from the store, and refusals per bucket by reason, read from the
//! rejected-requests record; each turned into a [`BarChart`] and its SVG.

use super::chart::{BarChart, ChartHeader, ChartWindow, Key};
use super::*;
use crate::http::rejected::RejectReason;
use crate::store::{ActivityWindow, RunDurations, StoreError};

/// The window a page was asked for: `?window=day`, else the last hour.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WindowQuery {
    window: Option<String>,
}

impl WindowQuery {
    pub(super) fn read(query: Option<&str>) -> ChartWindow {
        let asked: WindowQuery = query::read(query).unwrap_or_default();
        ChartWindow::parse(asked.window.as_deref())
    }
}

/// A run status's colour in the charts, the same hues as the pages' status labels.
const STATUS_KEYS: [Key; 7] = [
    Key {
        name: "succeeded",
        colour: "#1a7f37",
    },
    Key {
        name: "failed",
        colour: "#b42318",
    },
    Key {
        name: "filtered",
        colour: "#6e5494",
    },
    Key {
        name: "cancelled",
        colour: "#b9a8d6",
    },
    Key {
        name: "retrying",
        colour: "#d99a00",
    },
    Key {
        name: "running",
        colour: "#1d5fb4",
    },
    Key {
        name: "queued",
        colour: "#8c959f",
    },
];

/// Colours for refusal reasons, in `RejectReason::ALL`'s order.
const REASON_COLOURS: [&str; 15] = [
    "#8c959f", "#6e5494", "#b42318", "#d99a00", "#bc4c00", "#7d4e24", "#1d5fb4", "#0a7ea4",
    "#cf222e", "#9a6700", "#e85aad", "#57606a", "#1a7f37", "#2da44e", "#24292f",
];

/// A chart and the numbers a page shows beside it, for the template.
pub(super) fn chart_view(chart: &BarChart) -> Json {
    json!({
        "svg": chart.svg(),
        "window": chart.window.as_str(),
        "total": chart.totals().iter().sum::<u64>(),
    })
}

/// Runs per bucket by status over the window ending now, of one workflow or all, and the
/// durations of those that finished.
pub(super) async fn run_activity(
    state: &AppState,
    workflow: Option<&str>,
    window: ChartWindow,
) -> Result<(BarChart, RunDurations), StoreError> {
    let span = window.span(Utc::now());
    let asked = ActivityWindow {
        workflow: workflow.map(str::to_owned),
        since: span.start(),
        until: span.end,
    };
    let minutes = state.store.runs_per_minute(&asked).await?;
    let durations = state.store.run_durations(&asked).await?;
    let header = ChartHeader {
        id: "runs-chart",
        title: match workflow {
            Some(name) => format!("Runs of {name} by status"),
            None => "Runs by status".to_owned(),
        },
        key_attribute: "status",
        unit: "runs",
        window,
    };
    let counts = minutes
        .iter()
        .map(|m| (m.minute, m.status.as_str(), m.runs));
    Ok((
        BarChart::tally(header, span, STATUS_KEYS.to_vec(), counts),
        durations,
    ))
}

/// The p50/p95 as the page writes them.
pub(super) fn durations_view(durations: &RunDurations) -> Json {
    json!({
        "finished": durations.finished,
        "p50": durations.p50_ms.map(duration_text),
        "p95": durations.p95_ms.map(duration_text),
        "p50_ms": durations.p50_ms,
        "p95_ms": durations.p95_ms,
    })
}

/// Refusals per bucket by reason over the window ending now.
pub(super) fn rejected_activity(state: &AppState, window: ChartWindow) -> BarChart {
    let span = window.span(Utc::now());
    let keys = RejectReason::ALL
        .iter()
        .zip(REASON_COLOURS)
        .map(|(reason, colour)| Key {
            name: reason.as_str(),
            colour,
        })
        .collect();
    let header = ChartHeader {
        id: "rejected-chart",
        title: "Refused requests by reason".to_owned(),
        key_attribute: "reason",
        unit: "refusals",
        window,
    };
    BarChart::tally(header, span, keys, state.rejected.per_minute(span.start()))
}
