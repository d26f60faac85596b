//! The GPU utilisation chart of the summary (PNG, plotters).
//!
//! [`series_from_samples`] turns raw GPU samples into one mean-utilisation line per node;
//! [`gpu_utilisation_png`] draws those lines over the summary window (times in the summary's
//! timezone) and encodes the picture as PNG in memory. Text needs a TrueType font, loaded once per
//! process from well-known system paths; without one the chart is drawn without any text.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use ugro_core::sample::GpuSample;

/// Width of the chart in pixels.
pub const CHART_WIDTH: u32 = 900;
/// Height of the chart in pixels.
pub const CHART_HEIGHT: u32 = 400;

/// Width of the legend column on the right of the plot.
const LEGEND_WIDTH: u32 = 180;
/// Height of one legend row.
const LEGEND_ROW: i32 = 16;
/// The most x-axis labels we draw.
const MAX_X_TICKS: usize = 12;
/// Shown instead of lines when there is nothing to draw.
const EMPTY_MESSAGE: &str = "no GPU samples in this window";
/// The family name the loaded font is registered under.
const FONT_FAMILY: &str = "sans-serif";

/// Fonts tried, in order, when the chart first needs one (Debian/Ubuntu, Fedora/RHEL, Arch, SUSE).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/google-noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/gnu-free/FreeSans.ttf",
    "/usr/share/fonts/truetype/lato/Lato-Regular.ttf",
];

/// Line colours: Tableau 10, then ten darker/other hues distinct from those (tab20b picks).
const PALETTE: [RGBColor; 20] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x39, 0x3b, 0x79),
    RGBColor(0x63, 0x79, 0x39),
    RGBColor(0x8c, 0x6d, 0x31),
    RGBColor(0x84, 0x3c, 0x39),
    RGBColor(0x7b, 0x41, 0x73),
    RGBColor(0xe7, 0xba, 0x52),
    RGBColor(0x6b, 0x6e, 0xcf),
    RGBColor(0xb5, 0xcf, 0x6b),
    RGBColor(0xd6, 0x61, 0x6b),
    RGBColor(0xce, 0x6d, 0xbd),
];
const GRID: RGBColor = RGBColor(0xe0, 0xe0, 0xe0);
const AXIS: RGBColor = RGBColor(0x60, 0x60, 0x60);
const TEXT: RGBColor = RGBColor(0x20, 0x20, 0x20);
const MUTED: RGBColor = RGBColor(0x80, 0x80, 0x80);

/// One node's line: mean GPU utilisation (0–100) of the node at each sample time.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSeries {
    pub name: String,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// What to draw.
#[derive(Debug, Clone)]
pub struct ChartInput<'a> {
    pub title: String,
    /// Axis labels are in this timezone (`summary.timezone`).
    pub tz: Tz,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub series: &'a [ChartSeries],
}

/// Why the chart could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("drawing the GPU utilisation chart ({op})")]
    Draw {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("encoding the GPU utilisation chart as PNG")]
    Encode(#[from] png::EncodingError),
}

/// Mean utilisation per node and sample instant, from raw samples (bucket by `interval`).
///
/// Samples are grouped per node into buckets of `interval` aligned to the Unix epoch; each point
/// is the mean utilisation of all the node's GPU samples in the bucket, stamped with the bucket's
/// start. Non-finite utilisations are ignored. Series are sorted by node name, points by time. A
/// zero `interval` groups by exact (millisecond) instant.
pub fn series_from_samples(samples: &[GpuSample], interval: Duration) -> Vec<ChartSeries> {
    let step_ms = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let mut nodes: BTreeMap<&str, BTreeMap<i64, (f64, u32)>> = BTreeMap::new();
    for sample in samples {
        if !sample.utilization_pct.is_finite() {
            continue;
        }
        let bucket = sample.at.timestamp_millis().div_euclid(step_ms) * step_ms;
        let entry = nodes
            .entry(sample.node.as_str())
            .or_default()
            .entry(bucket)
            .or_insert((0.0, 0));
        entry.0 += sample.utilization_pct;
        entry.1 += 1;
    }
    nodes
        .into_iter()
        .map(|(node, buckets)| ChartSeries {
            name: node.to_owned(),
            points: buckets
                .into_iter()
                .filter_map(|(ms, (sum, n))| {
                    DateTime::from_timestamp_millis(ms).map(|at| (at, sum / f64::from(n)))
                })
                .collect(),
        })
        .collect()
}

/// The chart as PNG bytes (`CHART_WIDTH` × `CHART_HEIGHT`, RGB): one line per node over the
/// window, y 0–100 %, x labelled HH:MM in `input.tz`, legend on the right. Gaps in a node's
/// samples longer than twice the usual sampling interval break its line. Values are clamped to
/// 0–100; non-finite values and points outside the window are skipped. Without a usable system
/// font the chart has no text.
pub fn gpu_utilisation_png(input: &ChartInput) -> Result<Vec<u8>, ChartError> {
    render_png(input, font_available())
}

/// Registers the first loadable font of `FONT_PATHS` with plotters, once per process; whether
/// text can be drawn.
fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        for path in FONT_PATHS {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            // plotters keeps fonts for the life of the process and wants 'static bytes; this
            // runs once, so leaking the file's contents is the intended ownership.
            let bytes: &'static [u8] = Vec::leak(bytes);
            match register_font(FONT_FAMILY, FontStyle::Normal, bytes) {
                Ok(()) => {
                    tracing::debug!(font = path, "chart font loaded");
                    return true;
                }
                Err(_) => {
                    tracing::warn!(font = path, "not a usable TrueType font; trying the next")
                }
            }
        }
        tracing::warn!(
            tried = ?FONT_PATHS,
            "no TrueType font found; GPU charts are drawn without text (install fonts-dejavu-core)"
        );
        false
    })
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(
    op: &'static str,
) -> impl FnOnce(E) -> ChartError {
    move |e| ChartError::Draw {
        op,
        source: Box::new(e),
    }
}

/// A series reduced to what is drawn: its segments (split at gaps), in x = milliseconds since
/// the window start, y clamped to 0–100.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    name: String,
    segments: Vec<Vec<(i64, f64)>>,
}

/// Points of a series inside `[start, end]` with finite values, clamped, sorted by time.
fn clean_points(
    points: &[(DateTime<Utc>, f64)],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, f64)> {
    let mut kept: Vec<_> = points
        .iter()
        .filter(|(at, v)| v.is_finite() && *at >= start && *at <= end)
        .map(|&(at, v)| (at, v.clamp(0.0, 100.0)))
        .collect();
    kept.sort_by_key(|&(at, _)| at);
    kept
}

/// The usual sampling interval: the median positive step between consecutive points of all
/// series; None when no series has two distinct instants.
fn typical_step<'p>(
    series: impl IntoIterator<Item = &'p [(DateTime<Utc>, f64)]>,
) -> Option<chrono::Duration> {
    let mut steps: Vec<chrono::Duration> = series
        .into_iter()
        .flat_map(|points| points.windows(2).map(|w| w[1].0 - w[0].0))
        .filter(|step| *step > chrono::Duration::zero())
        .collect();
    if steps.is_empty() {
        return None;
    }
    steps.sort();
    Some(steps[steps.len() / 2])
}

/// Splits time-sorted points wherever consecutive points are more than `max_gap` apart.
fn split_at_gaps<T: Clone>(
    points: &[(DateTime<Utc>, T)],
    max_gap: Option<chrono::Duration>,
) -> Vec<Vec<(DateTime<Utc>, T)>> {
    let mut segments: Vec<Vec<(DateTime<Utc>, T)>> = Vec::new();
    let mut previous: Option<DateTime<Utc>> = None;
    for point in points {
        let breaks = match (previous, max_gap) {
            (Some(prev), Some(gap)) => point.0 - prev > gap,
            (None, _) => true,
            (Some(_), None) => false,
        };
        match segments.last_mut() {
            Some(segment) if !breaks => segment.push(point.clone()),
            _ => segments.push(vec![point.clone()]),
        }
        previous = Some(point.0);
    }
    segments
}

/// The drawable lines of `input`, without series that have nothing in the window.
fn lines(input: &ChartInput, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Line> {
    let cleaned: Vec<_> = input
        .series
        .iter()
        .map(|s| (s.name.as_str(), clean_points(&s.points, start, end)))
        .filter(|(_, points)| !points.is_empty())
        .collect();
    let max_gap = typical_step(cleaned.iter().map(|(_, p)| p.as_slice())).map(|step| step * 2);
    cleaned
        .into_iter()
        .map(|(name, points)| Line {
            name: name.to_owned(),
            segments: split_at_gaps(&points, max_gap)
                .into_iter()
                .map(|segment| {
                    segment
                        .into_iter()
                        .map(|(at, v)| ((at - start).num_milliseconds(), v))
                        .collect()
                })
                .collect(),
        })
        .collect()
}

/// Tick instants for the x axis: round local times (in `tz`) at a step chosen so that at most
/// `MAX_X_TICKS` fall inside `[start, end]`.
fn time_ticks(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> (Vec<DateTime<Utc>>, bool) {
    const STEPS_MIN: [i64; 14] = [1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440, 2880];
    let span_min = (end - start).num_minutes().max(1);
    let step_min = STEPS_MIN
        .iter()
        .copied()
        .find(|step| span_min / step < MAX_X_TICKS as i64)
        .unwrap_or(10080);
    let step = chrono::Duration::minutes(step_min);
    let daily = step_min >= 1440;

    let local_start = start.with_timezone(&tz).naive_local();
    let local_end = end.with_timezone(&tz).naive_local();
    let mut cursor = local_start.date().and_time(NaiveTime::MIN);
    // Sub-day steps start at the last round time before the window; day steps count whole days
    // from the window's first local midnight.
    if !daily {
        while cursor + step <= local_start {
            cursor += step;
        }
    }
    let mut ticks = Vec::new();
    // Bounded loop: never more than a few hundred iterations for sane windows.
    for _ in 0..10_000 {
        if cursor > local_end + step {
            break;
        }
        if let Some(at) = tz.from_local_datetime(&cursor).earliest() {
            let at = at.with_timezone(&Utc);
            if at >= start && at <= end {
                ticks.push(at);
            }
        }
        cursor = if daily {
            match cursor.checked_add_days(Days::new((step_min / 1440) as u64)) {
                Some(next) => next,
                None => break,
            }
        } else {
            cursor + step
        };
    }
    ticks.sort();
    ticks.dedup();
    if ticks.len() > MAX_X_TICKS {
        let keep_every = ticks.len().div_ceil(MAX_X_TICKS);
        ticks = ticks.into_iter().step_by(keep_every).collect();
    }
    (ticks, daily)
}

/// The same chart as an SVG document (for the web dashboard), with its own y-axis name and
/// empty-window message; text is drawn as SVG `<text>` (laid out with the system font when
/// there is one).
pub fn chart_svg(input: &ChartInput, y_desc: &str, empty: &str) -> Result<String, ChartError> {
    let text = font_available();
    let mut out = String::new();
    {
        let root =
            SVGBackend::with_string(&mut out, (CHART_WIDTH, CHART_HEIGHT)).into_drawing_area();
        draw_with(&root, input, text, (y_desc, empty))?;
        root.present().map_err(draw_error("finishing the SVG"))?;
    }
    Ok(out)
}

fn render_png(input: &ChartInput, text: bool) -> Result<Vec<u8>, ChartError> {
    let mut rgb = vec![0u8; CHART_WIDTH as usize * CHART_HEIGHT as usize * 3];
    {
        let backend = BitMapBackend::with_buffer_and_format(&mut rgb, (CHART_WIDTH, CHART_HEIGHT))
            .map_err(draw_error("allocating the bitmap"))?;
        let root = backend.into_drawing_area();
        draw(&root, input, text)?;
        root.present().map_err(draw_error("finishing the bitmap"))?;
    }
    encode_png(&rgb, CHART_WIDTH, CHART_HEIGHT)
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

fn draw(
    root: &DrawingArea<BitMapBackend, Shift>,
    input: &ChartInput,
    text: bool,
) -> Result<(), ChartError> {
    draw_with(root, input, text, ("GPU utilisation", EMPTY_MESSAGE))
}

/// Draws on any backend; `labels` is the y-axis name and the empty-window message.
fn draw_with<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    input: &ChartInput,
    text: bool,
    labels: (&str, &str),
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)
        .map_err(draw_error("filling the background"))?;

    let start = input.window_start;
    // A window that is empty or reversed is drawn as one empty hour from its start.
    let (end, lines) = if input.window_end > start {
        (input.window_end, lines(input, start, input.window_end))
    } else {
        (start + chrono::Duration::hours(1), Vec::new())
    };
    let span = (end - start).num_milliseconds();

    let body = root.margin(8, 8, 8, 8);
    let body = if text && !input.title.is_empty() {
        body.titled(&input.title, (FONT_FAMILY, 18).into_font().color(&TEXT))
            .map_err(draw_error("drawing the title"))?
    } else {
        body
    };
    // Without text there is no legend: the plot takes the whole width.
    let (plot_area, legend_area) = if text {
        let (plot, legend) = body.split_horizontally(CHART_WIDTH - LEGEND_WIDTH);
        (plot, Some(legend))
    } else {
        (body, None)
    };

    let (ticks, daily) = time_ticks(start, end, input.tz);
    let x_keys: Vec<i64> = ticks
        .iter()
        .map(|&at| (at - start).num_milliseconds())
        .collect();

    let mut builder = ChartBuilder::on(&plot_area);
    builder.margin_right(12).margin_top(6);
    if text {
        builder.x_label_area_size(44).y_label_area_size(58);
    }
    let mut chart = builder
        .build_cartesian_2d((0..span).with_key_points(x_keys), 0.0..100.0)
        .map_err(draw_error("laying out the axes"))?;

    let tz = input.tz;
    let x_label = move |ms: &i64| {
        let at = start + chrono::Duration::milliseconds(*ms);
        let local = at.with_timezone(&tz);
        if daily {
            local.format("%a %d %b").to_string()
        } else {
            local.format("%H:%M").to_string()
        }
    };
    let x_desc = format!(
        "{} – {} ({})",
        start.with_timezone(&tz).format("%a %Y-%m-%d %H:%M"),
        end.with_timezone(&tz).format("%a %Y-%m-%d %H:%M"),
        tz.name()
    );
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .y_labels(6)
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v| format!("{v:.0} %"));
    if text {
        mesh.label_style((FONT_FAMILY, 12).into_font().color(&TEXT))
            .axis_desc_style((FONT_FAMILY, 13).into_font().color(&TEXT))
            .x_desc(x_desc)
            .y_desc(labels.0);
    }
    mesh.draw()
        .map_err(draw_error("drawing the grid and axes"))?;
    if !text {
        // Without label areas plotters draws no axis lines; frame the plot instead.
        chart
            .plotting_area()
            .draw(&Rectangle::new([(0, 0.0), (span, 100.0)], AXIS))
            .map_err(draw_error("drawing the frame"))?;
    }

    let stroke = if lines.len() <= 8 { 2 } else { 1 };
    for (index, line) in lines.iter().enumerate() {
        let style = PALETTE[index % PALETTE.len()].stroke_width(stroke);
        for segment in &line.segments {
            if let [only] = segment.as_slice() {
                chart
                    .plotting_area()
                    .draw(&Circle::new(*only, 2, style.filled()))
                    .map_err(draw_error("drawing a lone sample"))?;
            } else {
                chart
                    .plotting_area()
                    .draw(&PathElement::new(segment.clone(), style))
                    .map_err(draw_error("drawing a line"))?;
            }
        }
    }

    if let Some(legend_area) = legend_area {
        if lines.is_empty() {
            let (w, h) = chart.plotting_area().dim_in_pixel();
            let style = (FONT_FAMILY, 16)
                .into_font()
                .color(&MUTED)
                .pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .plotting_area()
                .strip_coord_spec()
                .draw_text(labels.1, &style, (w as i32 / 2, h as i32 / 2))
                .map_err(draw_error("drawing the empty-window message"))?;
        } else {
            draw_legend(&legend_area, &lines)?;
        }
    }
    Ok(())
}

/// Legend rows (colour sample + node name) down the right column; a second column when the
/// nodes do not fit in one, and "+N more" when they do not fit in two.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lines: &[Line],
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let (width, height) = area.dim_in_pixel();
    let top = 10;
    let rows = ((height as i32 - top) / LEGEND_ROW).max(1) as usize;
    let columns = if lines.len() > rows { 2 } else { 1 };
    let capacity = rows * columns;
    let shown = if lines.len() > capacity {
        capacity - 1
    } else {
        lines.len()
    };
    let column_width = (width as i32 - 8) / columns as i32;
    let font = (FONT_FAMILY, 12).into_font();
    let style = font.color(&TEXT).pos(Pos::new(HPos::Left, VPos::Center));
    let sample_width = if columns == 1 { 20 } else { 12 };
    let text_width = column_width - sample_width - 10;

    let place = |slot: usize| {
        let x = 8 + (slot / rows) as i32 * column_width;
        let y = top + (slot % rows) as i32 * LEGEND_ROW + LEGEND_ROW / 2;
        (x, y)
    };
    for (index, line) in lines.iter().take(shown).enumerate() {
        let (x, y) = place(index);
        let colour = PALETTE[index % PALETTE.len()];
        area.draw(&PathElement::new(
            vec![(x, y), (x + sample_width, y)],
            colour.stroke_width(3),
        ))
        .map_err(draw_error("drawing a legend sample"))?;
        let label = fit_text(area, &line.name, &style, text_width);
        area.draw_text(&label, &style, (x + sample_width + 5, y))
            .map_err(draw_error("drawing a legend label"))?;
    }
    if shown < lines.len() {
        let (x, y) = place(shown);
        let more = format!("+{} more", lines.len() - shown);
        area.draw_text(&more, &style, (x, y))
            .map_err(draw_error("drawing the legend overflow"))?;
    }
    Ok(())
}

/// `text`, shortened in the middle (node names tend to share prefixes and differ at the end)
/// until it is at most `max_width` pixels wide.
fn fit_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
    max_width: i32,
) -> String {
    let fits = |s: &str| {
        area.estimate_text_size(s, style)
            .map(|(w, _)| w as i32 <= max_width)
            .unwrap_or(true)
    };
    if fits(text) {
        return text.to_owned();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.remove(chars.len() / 2);
        let (head, tail) = chars.split_at(chars.len() / 2);
        let candidate: String = head.iter().chain(['…'].iter()).chain(tail).collect();
        if fits(&candidate) {
            return candidate;
        }
    }
    "…".to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn gpu(node: &str, when: DateTime<Utc>, gpu: u32, util: f64) -> GpuSample {
        GpuSample {
            node: node.to_owned(),
            at: when,
            gpu,
            utilization_pct: util,
            memory_used_mib: 0,
            memory_total_mib: 80_000,
            temperature_c: None,
            power_w: None,
            processes: None,
        }
    }

    fn window() -> (DateTime<Utc>, DateTime<Utc>) {
        (at("2024-05-05T16:00:00Z"), at("2024-05-06T16:00:00Z"))
    }

    fn input<'a>(series: &'a [ChartSeries]) -> ChartInput<'a> {
        let (start, end) = window();
        ChartInput {
            title: "GPU utilisation".to_owned(),
            tz: chrono_tz::Europe::Berlin,
            window_start: start,
            window_end: end,
            series,
        }
    }

    /// A node's series every 5 minutes over the test window, value from `f(i)`.
    fn wave(name: &str, f: impl Fn(usize) -> f64) -> ChartSeries {
        let (start, _) = window();
        ChartSeries {
            name: name.to_owned(),
            points: (0..288)
                .map(|i| (start + chrono::Duration::minutes(5 * i as i64), f(i)))
                .collect(),
        }
    }

    struct Decoded {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    }

    impl Decoded {
        fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
            let i = (y * self.width + x) as usize * 3;
            [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
        }
        fn colours(&self) -> HashSet<[u8; 3]> {
            self.rgb
                .chunks_exact(3)
                .map(|p| [p[0], p[1], p[2]])
                .collect()
        }
        /// Columns left of the legend holding at least one pixel of exactly `colour`.
        fn plot_columns_with(&self, colour: RGBColor) -> Vec<u32> {
            let want = [colour.0, colour.1, colour.2];
            (0..CHART_WIDTH - LEGEND_WIDTH)
                .filter(|&x| (0..self.height).any(|y| self.pixel(x, y) == want))
                .collect()
        }
    }

    /// Checks the PNG signature and IHDR by hand, then decodes with the png crate.
    fn decode(bytes: &[u8]) -> Decoded {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR", "first chunk is IHDR");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), (CHART_WIDTH, CHART_HEIGHT));

        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        rgb.truncate(info.buffer_size());
        Decoded {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    fn largest_hole(columns: &[u32]) -> u32 {
        columns
            .windows(2)
            .map(|w| w[1] - w[0] - 1)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn chart_is_a_png_of_the_right_size_with_lines_and_text() {
        let series = vec![
            wave("gpu-a", |i| (i as f64 / 3.0).sin() * 40.0 + 50.0),
            wave("gpu-b", |i| if i % 50 < 25 { 95.0 } else { 5.0 }),
        ];
        let img = decode(&gpu_utilisation_png(&input(&series)).unwrap());
        let colours = img.colours();
        assert!(colours.len() > 10, "only {} colours", colours.len());
        for colour in &PALETTE[..2] {
            assert!(
                img.plot_columns_with(*colour).len() > 400,
                "series line {colour:?} missing"
            );
        }
        // Text (anti-aliased glyphs of the title, labels, legend) brings grey shades.
        assert!(
            font_available(),
            "tests expect DejaVu (fonts-dejavu-core) installed"
        );
        assert!(
            colours
                .iter()
                .any(|c| c[0] == c[1] && c[1] == c[2] && c[0] > 40 && c[0] < 200)
        );
    }

    #[test]
    fn different_data_gives_different_images() {
        let one = vec![wave("gpu-a", |_| 20.0)];
        let two = vec![wave("gpu-a", |_| 80.0)];
        let renamed = vec![wave("gpu-z", |_| 20.0)];
        let a = gpu_utilisation_png(&input(&one)).unwrap();
        assert_ne!(a, gpu_utilisation_png(&input(&two)).unwrap());
        assert_ne!(a, gpu_utilisation_png(&input(&renamed)).unwrap());
        let mut other_tz = input(&one);
        other_tz.tz = chrono_tz::Asia::Tokyo;
        assert_ne!(
            a,
            gpu_utilisation_png(&other_tz).unwrap(),
            "labels follow tz"
        );
        assert_eq!(
            a,
            gpu_utilisation_png(&input(&one)).unwrap(),
            "deterministic"
        );
    }

    #[test]
    fn empty_input_gives_a_png_with_the_message() {
        let empty_series = vec![ChartSeries {
            name: "gpu-a".to_owned(),
            points: vec![],
        }];
        let none = gpu_utilisation_png(&input(&[])).unwrap();
        let img = decode(&none);
        assert!(img.colours().len() > 2, "axes and message are drawn");
        assert_eq!(none, gpu_utilisation_png(&input(&empty_series)).unwrap());
        // The message is the only difference to a chart without text in the plot.
        let without_message = decode(&render_png(&input(&[]), false).unwrap());
        assert_ne!(img.rgb, without_message.rgb);
    }

    #[test]
    fn without_a_font_the_chart_has_no_text_but_still_works() {
        let series = vec![wave("gpu-a", |i| (i % 100) as f64)];
        let img = decode(&render_png(&input(&series), false).unwrap());
        assert!(img.plot_columns_with(PALETTE[0]).len() > 400);
        // Greys are only white, grid and axis; anti-aliased dark text would add many shades.
        let greys: HashSet<u8> = img
            .colours()
            .into_iter()
            .filter(|c| c[0] == c[1] && c[1] == c[2])
            .map(|c| c[0])
            .collect();
        assert_eq!(greys, HashSet::from([0xff, GRID.0, AXIS.0]));
        // No legend either: the line runs on where the legend column would be.
        let want = [PALETTE[0].0, PALETTE[0].1, PALETTE[0].2];
        let right = CHART_WIDTH - LEGEND_WIDTH + 50;
        assert!((0..CHART_HEIGHT).any(|y| img.pixel(right, y) == want));
        decode(&render_png(&input(&[]), false).unwrap());
    }

    #[test]
    fn twenty_nodes_over_a_day_render() {
        let series: Vec<ChartSeries> = (0..20)
            .map(|n| {
                wave(&format!("node-{n:02}"), move |i| {
                    ((i + n * 13) % 100) as f64
                })
            })
            .collect();
        let img = decode(&gpu_utilisation_png(&input(&series)).unwrap());
        for colour in PALETTE {
            assert!(
                !img.plot_columns_with(colour).is_empty(),
                "{colour:?} missing"
            );
        }
        // All 20 legend samples are in the legend column.
        let legend_x = CHART_WIDTH - LEGEND_WIDTH + 20;
        for colour in PALETTE {
            let want = [colour.0, colour.1, colour.2];
            assert!(
                (0..CHART_HEIGHT).any(|y| img.pixel(legend_x, y) == want),
                "legend sample {colour:?} missing"
            );
        }
    }

    #[test]
    fn many_nodes_with_long_names_do_not_fail() {
        let series: Vec<ChartSeries> = (0..60)
            .map(|n| wave(&format!("a-very-long-node-name-number-{n}"), |_| 50.0))
            .collect();
        decode(&gpu_utilisation_png(&input(&series)).unwrap());
    }

    #[test]
    fn long_legend_names_are_shortened_in_the_middle() {
        assert!(font_available());
        let mut rgb = vec![0u8; 300 * 40 * 3];
        let area = BitMapBackend::with_buffer(&mut rgb, (300, 40)).into_drawing_area();
        let style = (FONT_FAMILY, 12).into_font().color(&TEXT);
        assert_eq!(fit_text(&area, "node-1", &style, 80), "node-1");
        let short = fit_text(&area, "gpu-cluster-b-node-00017", &style, 80);
        assert!(short.starts_with("gpu") && short.ends_with("017") && short.contains('…'));
        assert!(
            area.estimate_text_size(&short, &style).unwrap().0 <= 80,
            "{short}"
        );
    }

    #[test]
    fn bad_values_are_clamped_or_skipped() {
        let (start, end) = window();
        let clean = vec![wave("gpu-a", |i| if i == 100 { 100.0 } else { 30.0 })];
        let mut dirty = vec![wave("gpu-a", |i| if i == 100 { 250.0 } else { 30.0 })];
        dirty[0]
            .points
            .insert(50, (start + chrono::Duration::seconds(1), f64::NAN));
        dirty[0]
            .points
            .push((end + chrono::Duration::hours(2), 70.0));
        dirty[0]
            .points
            .insert(0, (start - chrono::Duration::hours(2), 70.0));
        dirty[0].points.swap(10, 20); // unsorted input
        assert_eq!(
            gpu_utilisation_png(&input(&clean)).unwrap(),
            gpu_utilisation_png(&input(&dirty)).unwrap()
        );

        let low = vec![wave("gpu-a", |_| 0.0)];
        let negative = vec![wave("gpu-a", |_| -40.0)];
        assert_eq!(
            gpu_utilisation_png(&input(&low)).unwrap(),
            gpu_utilisation_png(&input(&negative)).unwrap()
        );

        let weird = vec![ChartSeries {
            name: String::new(),
            points: vec![
                (start, f64::INFINITY),
                (start, f64::NEG_INFINITY),
                (start + chrono::Duration::minutes(1), 1e300),
            ],
        }];
        decode(&gpu_utilisation_png(&input(&weird)).unwrap());

        let mut reversed = input(&clean);
        reversed.window_end = start - chrono::Duration::hours(1);
        decode(&gpu_utilisation_png(&reversed).unwrap());
        reversed.window_end = start;
        decode(&gpu_utilisation_png(&reversed).unwrap());
    }

    #[test]
    fn series_from_samples_averages_per_node_and_instant() {
        let t0 = at("2024-05-06T10:00:00Z");
        let t1 = at("2024-05-06T10:01:00Z");
        let samples = vec![
            gpu("b", t0, 0, 100.0),
            gpu("a", t0, 0, 10.0),
            gpu("a", t0 + chrono::Duration::milliseconds(700), 1, 30.0),
            gpu("a", t1, 0, 50.0),
            gpu("a", t1 + chrono::Duration::seconds(2), 1, f64::NAN),
            gpu("a", t1 + chrono::Duration::seconds(3), 2, 70.0),
        ];
        let series = series_from_samples(&samples, Duration::from_secs(60));
        assert_eq!(
            series,
            vec![
                ChartSeries {
                    name: "a".to_owned(),
                    points: vec![(t0, 20.0), (t1, 60.0)],
                },
                ChartSeries {
                    name: "b".to_owned(),
                    points: vec![(t0, 100.0)],
                },
            ]
        );
        assert!(series_from_samples(&[], Duration::from_secs(60)).is_empty());
        // A zero interval groups by exact instant.
        let exact = series_from_samples(&samples[1..3], Duration::ZERO);
        assert_eq!(exact[0].points.len(), 2);
    }

    #[test]
    fn gaps_split_lines() {
        let (start, end) = window();
        // Samples every 5 minutes, with nothing from 06:00 to 09:00 UTC.
        let hole = at("2024-05-06T06:00:00Z")..at("2024-05-06T09:00:00Z");
        let mut samples = Vec::new();
        let mut when = start;
        while when <= end {
            if !hole.contains(&when) {
                samples.push(gpu("n1", when, 0, 40.0));
                samples.push(gpu("n1", when, 1, 60.0));
            }
            when += chrono::Duration::minutes(5);
        }
        let series = series_from_samples(&samples, Duration::from_secs(300));
        assert!(series[0].points.iter().all(|&(_, v)| v == 50.0));

        let built = lines(&input(&series), start, end);
        assert_eq!(built.len(), 1);
        assert_eq!(built[0].segments.len(), 2, "one break at the hole");
        let first_end = built[0].segments[0].last().unwrap().0;
        let second_start = built[0].segments[1][0].0;
        assert_eq!(
            first_end,
            (at("2024-05-06T05:55:00Z") - start).num_milliseconds()
        );
        assert_eq!(
            second_start,
            (at("2024-05-06T09:00:00Z") - start).num_milliseconds()
        );

        // In the picture: a hole of roughly 3/24 of the plot width in the line's columns.
        let gapped = decode(&gpu_utilisation_png(&input(&series)).unwrap());
        let hole_px = largest_hole(&gapped.plot_columns_with(PALETTE[0]));
        assert!(hole_px > 60, "hole of {hole_px} px");
        let full = vec![wave("n1", |_| 50.0)];
        let solid = decode(&gpu_utilisation_png(&input(&full)).unwrap());
        assert_eq!(largest_hole(&solid.plot_columns_with(PALETTE[0])), 0);
    }

    #[test]
    fn gap_threshold_is_twice_the_usual_step() {
        let t = |m: i64| at("2024-05-06T00:00:00Z") + chrono::Duration::minutes(m);
        let points: Vec<_> = [0, 1, 2, 4, 7, 8].iter().map(|&m| (t(m), 1.0)).collect();
        let step = typical_step([points.as_slice()]).unwrap();
        assert_eq!(step, chrono::Duration::minutes(1));
        let segments = split_at_gaps(&points, Some(step * 2));
        // 2 → 4 is exactly twice the step (kept), 4 → 7 is more (broken).
        let lens: Vec<usize> = segments.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![4, 2]);
        assert_eq!(split_at_gaps(&points, None).len(), 1);
        assert!(typical_step([[(t(0), 1.0)].as_slice()]).is_none());
    }

    #[test]
    fn ticks_are_round_local_times_inside_the_window() {
        let (start, end) = window();
        let (ticks, daily) = time_ticks(start, end, chrono_tz::Asia::Kolkata);
        assert!(!daily);
        assert!(ticks.len() >= 6 && ticks.len() <= MAX_X_TICKS, "{ticks:?}");
        for tick in &ticks {
            assert!(*tick >= start && *tick <= end);
            let local = tick.with_timezone(&chrono_tz::Asia::Kolkata);
            assert_eq!(local.format("%M").to_string(), "00", "{local}");
        }
        let (week, daily) = time_ticks(start, start + chrono::Duration::days(7), chrono_tz::UTC);
        assert!(daily);
        assert!(week.len() <= MAX_X_TICKS && week.len() >= 4);
        let (year, _) = time_ticks(start, start + chrono::Duration::days(400), chrono_tz::UTC);
        assert!(!year.is_empty() && year.len() <= MAX_X_TICKS);
    }

    /// Writes example charts (/tmp/chart-example*.png) for eyeballing: `cargo test -p ugro-monitor --lib chart -- --ignored`.
    #[test]
    #[ignore = "writes /tmp/chart-example.png for a visual check"]
    fn write_example_chart() {
        let n: usize = std::env::var("CHART_NODES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(6);
        let mut series: Vec<ChartSeries> = (0..n)
            .map(|k| {
                wave(&format!("gpu-node-{k:02}"), move |i| {
                    ((i as f64 / (10.0 + k as f64)).sin() * 45.0 + 50.0).round()
                })
            })
            .collect();
        let hole = at("2024-05-06T03:00:00Z")..at("2024-05-06T06:00:00Z");
        series[0].points.retain(|(when, _)| !hole.contains(when));
        let png = gpu_utilisation_png(&input(&series)).unwrap();
        std::fs::write("/tmp/chart-example.png", png).unwrap();
        let empty = gpu_utilisation_png(&input(&[])).unwrap();
        std::fs::write("/tmp/chart-example-empty.png", empty).unwrap();
        let no_text = render_png(&input(&series), false).unwrap();
        std::fs::write("/tmp/chart-example-no-font.png", no_text).unwrap();
    }
}
