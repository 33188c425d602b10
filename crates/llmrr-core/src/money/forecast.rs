//! Forecast from an hourly cost series: a least-squares linear trend with a prediction
//! interval; with two weeks of data or more, each weekday gets its own level (seasonality).

use serde::Serialize;

/// A forecast of the total over the next `hours`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub hours: u32,
    pub expected_usd: f64,
    /// A 95% prediction interval of the total (never below zero).
    pub low_usd: f64,
    pub high_usd: f64,
    /// USD per hour per hour: the trend.
    pub slope_usd_per_hour2: f64,
    pub weekday_seasonality: bool,
}

/// A trend fitted to an hourly series.
struct Fit {
    n: usize,
    first_weekday: u32,
    first_hour: u32,
    factor: [f64; 7],
    intercept: f64,
    slope: f64,
    mean_x: f64,
    sxx: f64,
    points: f64,
    residual_var: f64,
    seasonal: bool,
}

impl Fit {
    fn weekday(&self, i: usize) -> usize {
        (self.first_weekday as usize + (self.first_hour as usize + i) / 24) % 7
    }

    /// Hour `h` after the series: (expected, variance).
    fn at(&self, h: usize) -> (f64, f64) {
        let x = (self.n + h) as f64;
        let f = self.factor[self.weekday(self.n + h)];
        let expected = ((self.intercept + self.slope * x) * f).max(0.0);
        // Noise plus the fit's own uncertainty at x.
        let fit = self.residual_var
            * (1.0 / self.points + (x - self.mean_x).powi(2) / self.sxx.max(1e-12));
        (expected, (self.residual_var + fit) * f * f)
    }
}

/// `series`: USD per hour, oldest first, the last entry the hour that just ended (missing
/// hours are zeros). `first`: the weekday (0 = Monday) and hour of day (0-23) of `series[0]`,
/// in the report's time zone.
fn fit(series: &[f64], first: (u32, u32)) -> Fit {
    let (first_weekday, first_hour) = (first.0, first.1 % 24);
    let n = series.len();
    let seasonal = n >= 14 * 24;
    let weekday = |i: usize| (first_weekday as usize + (first_hour as usize + i) / 24) % 7;
    // Weekday factors: each weekday's mean over the overall mean.
    let mut factor = [1.0f64; 7];
    let overall = series.iter().sum::<f64>() / n.max(1) as f64;
    if seasonal && overall > 0.0 {
        let mut sum = [0.0f64; 7];
        let mut count = [0usize; 7];
        for (i, v) in series.iter().enumerate() {
            sum[weekday(i)] += v;
            count[weekday(i)] += 1;
        }
        for d in 0..7 {
            if count[d] > 0 {
                factor[d] = (sum[d] / count[d] as f64 / overall).max(0.0);
            }
        }
    }
    // The trend of the deseasonalized series (hours of a weekday that never costs anything
    // carry no level: they are left out).
    let points: Vec<(f64, f64)> = series
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let f = factor[weekday(i)];
            (f > 0.0).then(|| (i as f64, v / f))
        })
        .collect();
    let np = points.len().max(1) as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / np;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / np;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in &points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x).powi(2);
    }
    let slope = if sxx > 0.0 && points.len() > 1 {
        sxy / sxx
    } else {
        0.0
    };
    let intercept = mean_y - slope * mean_x;
    let residual_var = if points.len() > 2 {
        points
            .iter()
            .map(|(x, y)| (y - (intercept + slope * x)).powi(2))
            .sum::<f64>()
            / (np - 2.0)
    } else {
        0.0
    };
    Fit {
        n,
        first_weekday,
        first_hour,
        factor,
        intercept,
        slope,
        mean_x,
        sxx,
        points: np,
        residual_var,
        seasonal,
    }
}

/// The total over the next `hours`, with a 95% prediction interval.
pub fn forecast(series: &[f64], first: (u32, u32), hours: u32) -> Forecast {
    let fit = fit(series, first);
    let (mut expected, mut variance) = (0.0, 0.0);
    for h in 0..hours as usize {
        let (e, v) = fit.at(h);
        expected += e;
        variance += v;
    }
    let half = 1.96 * variance.sqrt();
    Forecast {
        hours,
        expected_usd: expected,
        low_usd: (expected - half).max(0.0),
        high_usd: expected + half,
        slope_usd_per_hour2: fit.slope,
        weekday_seasonality: fit.seasonal,
    }
}

/// The expected cost of each of the next `hours` hours (for run-out dates).
pub fn hourly_path(series: &[f64], first: (u32, u32), hours: u32) -> Vec<f64> {
    let fit = fit(series, first);
    (0..hours as usize).map(|h| fit.at(h).0).collect()
}

#[cfg(test)]
mod tests {
    use super::forecast;

    #[test]
    fn a_flat_series_forecasts_its_level_with_no_spread() {
        let f = forecast(&[2.0; 48], (0, 0), 24);
        assert!((f.expected_usd - 48.0).abs() < 1e-9, "{f:?}");
        assert!((f.high_usd - f.low_usd).abs() < 1e-9);
    }

    #[test]
    fn a_trend_is_extrapolated() {
        // 1, 2, 3, … 48 per hour: the next 24 hours are 49 … 72, summing to 1452.
        let series: Vec<f64> = (1..=48).map(f64::from).collect();
        let f = forecast(&series, (0, 0), 24);
        assert!((f.expected_usd - 1452.0).abs() < 1e-6, "{f:?}");
        assert!((f.slope_usd_per_hour2 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn noise_widens_the_interval_and_weekdays_shape_it() {
        let noisy: Vec<f64> = (0..96)
            .map(|i| if i % 2 == 0 { 1.0 } else { 3.0 })
            .collect();
        let f = forecast(&noisy, (0, 0), 24);
        assert!((f.expected_usd - 48.0).abs() < 1.0, "{f:?}");
        assert!(f.low_usd < 48.0 && f.high_usd > 48.0);
        // Three weeks: weekdays cost 1/hour, weekends 0. Starting on a Monday, the next
        // 24 hours after 21 days are a Monday again: 24, where a flat level would say 17.
        let weeks: Vec<f64> = (0..21 * 24)
            .map(|i| if (i / 24) % 7 >= 5 { 0.0 } else { 1.0 })
            .collect();
        let f = forecast(&weeks, (0, 0), 24);
        assert!(f.weekday_seasonality);
        assert!((f.expected_usd - 24.0).abs() < 0.5, "{f:?}");
        // The same weeks seen from noon on a Monday: the next 24 hours are Monday noon to
        // Tuesday noon, weekdays again.
        let from_noon: Vec<f64> = (0..21 * 24)
            .map(|i| if ((12 + i) / 24) % 7 >= 5 { 0.0 } else { 1.0 })
            .collect();
        let f = forecast(&from_noon, (0, 12), 24);
        assert!((f.expected_usd - 24.0).abs() < 0.5, "{f:?}");
    }
}
