//! Schedule expressions: a five-field cron (`0 9 * * MON-FRI`) or a rate (`5 minutes`) in an
//! IANA time zone, checked with croner and chrono-tz, turned into EventBridge Scheduler's
//! expression (`cron(0 9 ? * MON-FRI *)`, `rate(5 minutes)`), and the next fire times as
//! Scheduler computes them.
//!
//! Daylight saving (EventBridge Scheduler User Guide, "Daylight saving time"): a cron time that
//! falls in the hour skipped in spring does not fire that day; a time that occurs twice in
//! autumn fires once, at its first occurrence. Rates count fixed durations from their start.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A checked schedule expression.
#[derive(Debug, Clone)]
pub enum Expression {
    Cron { cron: Box<Cron>, aws: String },
    Rate { every: chrono::Duration, aws: String },
}

const WEEKDAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// A five-field cron pattern (minute hour day-of-month month day-of-week): numbers, names,
/// ranges, lists and steps; `L` and `W` in day-of-month; one `#` (nth weekday) in day-of-week.
/// Err(why) for anything EventBridge Scheduler cannot run: both day fields restricted at once
/// (its cron needs `?` in one), a step or `L` in day-of-week, more than one `#`.
pub fn parse_cron(pattern: &str) -> Result<Expression, String> {
    let upper = pattern.to_ascii_uppercase();
    let fields: Vec<&str> = upper.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {}",
            fields.len()
        ));
    }
    let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
    if fields.iter().any(|f| f.contains('+')) {
        return Err("a cron field cannot contain '+'".into());
    }
    for (index, field) in fields.iter().enumerate() {
        check_names(index, field)?;
    }
    // A day-of-week range ending on Sunday as 7 (cron's second Sunday) is the days up to
    // Saturday and Sunday: Scheduler's week starts on Sunday, so `MON-SUN` would be empty there.
    let dow_field = ends_on_sunday(fields[4]);
    let fields = [fields[0], fields[1], fields[2], fields[3], dow_field.as_str()];
    let cron = parser.parse(&fields.join(" ")).map_err(|e| format!("not a valid cron expression: {e}"))?;
    let (dom, dow) = (fields[2], fields[4]);
    let any = |f: &str| f == "*" || f == "?";
    let (dom, dow) = match (any(dom), any(dow)) {
        (_, true) => (dom.replace('?', "*"), "?".to_string()),
        (true, false) => {
            if dow.contains('/') || dow.contains('L') || dow.matches('#').count() > 1 {
                return Err(
                    "day-of-week takes days, ranges, lists or one nth weekday (FRI#2); list the days instead of a step"
                        .into(),
                );
            }
            ("?".to_string(), aws_weekdays(dow)?)
        }
        (false, false) => {
            return Err("day-of-month and day-of-week cannot both be restricted; use * in one of them".into());
        }
    };
    // Scheduler writes a step from a start value (0/5, 1/2); `*/n` is the same from the
    // field's first value.
    let from_start = |field: &str, first: &str| match field.strip_prefix("*/") {
        Some(step) => format!("{first}/{step}"),
        None => field.to_string(),
    };
    let aws = format!(
        "cron({} {} {} {} {} *)",
        from_start(fields[0], "0"),
        from_start(fields[1], "0"),
        from_start(&dom, "1"),
        from_start(fields[3], "1"),
        dow
    );
    Ok(Expression::Cron { cron: Box::new(cron), aws })
}

/// Letters only where names belong: months in month, days in day-of-week, `L` and `W` in
/// day-of-month (croner would read a day name anywhere, Scheduler would refuse it).
fn check_names(index: usize, field: &str) -> Result<(), String> {
    const NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
    for token in field.split(|c: char| !c.is_ascii_alphabetic()).filter(|t| !t.is_empty()) {
        let fits = match index {
            2 => matches!(token, "L" | "W" | "LW"),
            3 => MONTHS.contains(&token),
            4 => WEEKDAYS.contains(&token),
            _ => false,
        };
        if !fits {
            return Err(format!("the {} field cannot contain {token:?}", NAMES[index]));
        }
    }
    Ok(())
}

/// Each `X-7` / `X-SUN` range of a day-of-week field as `X-6,0` (all days when X is Sunday).
fn ends_on_sunday(field: &str) -> String {
    field
        .split(',')
        .map(|part| match part.split_once('-') {
            Some(("0" | "SUN" | "7", "7" | "SUN")) => "0-6".to_string(),
            Some((from, "7" | "SUN")) => format!("{from}-6,0"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A day-of-week field with numbers as names (cron's 0-7 with 0 and 7 Sunday; Scheduler's
/// numbers run 1-7 from Sunday, so names avoid the mismatch).
fn aws_weekdays(field: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut number = String::new();
    let flush = |number: &mut String, out: &mut String| -> Result<(), String> {
        if !number.is_empty() {
            let n: usize = number.parse().map_err(|_| format!("day of week {number:?}"))?;
            out.push_str(WEEKDAYS.get(n).ok_or_else(|| format!("day of week {n} is not 0-7"))?);
            number.clear();
        }
        Ok(())
    };
    let mut after_hash = false;
    for c in field.chars() {
        if c.is_ascii_digit() && !after_hash {
            number.push(c);
        } else {
            flush(&mut number, &mut out)?;
            after_hash = c == '#' || (after_hash && c.is_ascii_digit());
            out.push(c);
        }
    }
    flush(&mut number, &mut out)?;
    Ok(out)
}

/// `"<n> minute(s)|hour(s)|day(s)"`, n at least 1 (Scheduler's units).
pub fn parse_rate(rate: &str) -> Result<Expression, String> {
    let mut parts = rate.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("a rate is \"<number> minutes|hours|days\", such as \"5 minutes\"".into());
    };
    let n: i64 =
        n.parse().ok().filter(|n| (1..=1_000_000).contains(n)).ok_or("a rate's number is a whole number from 1")?;
    let (seconds, singular) = match unit {
        "minute" | "minutes" => (60, "minute"),
        "hour" | "hours" => (3600, "hour"),
        "day" | "days" => (86_400, "day"),
        _ => return Err(format!("a rate's unit is minutes, hours or days, not {unit:?}")),
    };
    let aws = if n == 1 { format!("rate(1 {singular})") } else { format!("rate({n} {singular}s)") };
    Ok(Expression::Rate { every: chrono::Duration::seconds(n * seconds), aws })
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| format!("{name:?} is not an IANA time zone name such as Europe/Berlin"))
}

impl Expression {
    /// Scheduler's form of the expression.
    pub fn aws(&self) -> &str {
        match self {
            Expression::Cron { aws, .. } | Expression::Rate { aws, .. } => aws,
        }
    }

    /// The next `count` fire times after `now`, within `[start, end]` when given. A rate counts
    /// from `start` (else `anchor`, when the schedule was created).
    pub fn next_fire_times(
        &self,
        tz: Tz,
        now: DateTime<Utc>,
        anchor: DateTime<Utc>,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        count: usize,
    ) -> Vec<DateTime<Utc>> {
        let from = start.map_or(now, |s| s.max(now));
        let mut out = Vec::new();
        match self {
            Expression::Rate { every, .. } => {
                let origin = start.unwrap_or(anchor);
                let steps =
                    if from <= origin { 0 } else { ((from - origin).num_seconds() / every.num_seconds().max(1)) + 1 };
                let mut at = origin + *every * (steps as i32);
                while out.len() < count && end.is_none_or(|end| at <= end) {
                    out.push(at);
                    at += *every;
                }
            }
            Expression::Cron { cron, .. } => {
                let mut seen: Option<NaiveDateTime> = None;
                let mut cursor = from.with_timezone(&tz);
                // Bounded: a per-minute pattern skips up to 60 repeated minutes each autumn;
                // one matching nothing real (30 FEB) ends when croner finds no occurrence.
                for _ in 0..(count * 4 + 128) {
                    let Ok(next) = cron.find_next_occurrence(&cursor, false) else { break };
                    cursor = next;
                    let local = next.naive_local();
                    // croner moves a time skipped by spring's change to after it, and can give
                    // both instants of a repeated hour: Scheduler fires neither the moved one
                    // nor the repeat.
                    let real = tz.from_local_datetime(&local).earliest().is_some_and(|first| first == next);
                    if !real || seen == Some(local) || !cron.is_time_matching(&next).unwrap_or(false) {
                        continue;
                    }
                    seen = Some(local);
                    let at = next.with_timezone(&Utc);
                    if end.is_some_and(|end| at > end) {
                        break;
                    }
                    out.push(at);
                    if out.len() == count {
                        break;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn times(expression: &Expression, tz: &str, now: &str, count: usize) -> Vec<String> {
        let tz = parse_timezone(tz).unwrap();
        expression
            .next_fire_times(tz, utc(now), utc(now), None, None, count)
            .iter()
            .map(|t| t.with_timezone(&tz).to_rfc3339())
            .collect()
    }

    #[test]
    fn cron_becomes_schedulers_six_field_form() {
        assert_eq!(parse_cron("0 9 * * MON-FRI").unwrap().aws(), "cron(0 9 ? * MON-FRI *)");
        assert_eq!(parse_cron("*/5 * * * *").unwrap().aws(), "cron(0/5 * * * ? *)");
        assert_eq!(parse_cron("0 */2 */3 * *").unwrap().aws(), "cron(0 0/2 1/3 * ? *)");
        assert_eq!(parse_cron("0 9 * * mon-fri").unwrap().aws(), "cron(0 9 ? * MON-FRI *)");
        assert_eq!(parse_cron("0 0 1 * *").unwrap().aws(), "cron(0 0 1 * ? *)");
        assert_eq!(parse_cron("30 6 * * 1-5").unwrap().aws(), "cron(30 6 ? * MON-FRI *)");
        assert_eq!(parse_cron("0 12 * * 0,7").unwrap().aws(), "cron(0 12 ? * SUN,SUN *)");
        assert_eq!(parse_cron("0 12 * * 5#2").unwrap().aws(), "cron(0 12 ? * FRI#2 *)");
        assert_eq!(parse_cron("0 9 * * 1-7").unwrap().aws(), "cron(0 9 ? * MON-SAT,SUN *)");
        assert_eq!(parse_cron("0 9 * * SAT-SUN").unwrap().aws(), "cron(0 9 ? * SAT-SAT,SUN *)");
        assert_eq!(parse_cron("0 9 * * 0-7").unwrap().aws(), "cron(0 9 ? * SUN-SAT *)");
        assert_eq!(parse_cron("0 9 L * *").unwrap().aws(), "cron(0 9 L * ? *)");
        assert_eq!(parse_cron("0 9 15W JAN-MAR *").unwrap().aws(), "cron(0 9 15W JAN-MAR ? *)");
        for bad in [
            "",
            "* * * *",
            "0 9 * * * *",
            "61 * * * *",
            "0 25 * * *",
            "0 9 * * FUNDAY",
            "0 9 1 * MON",
            "0 9 * * */2",
            "0 9 * * 1-5/2",
            "0 9 * * 5#1,5#3",
            "0 9 * * 5#L",
            "0 9 * * +MON",
            "0 MON * * *",
            "0 9 * * JAN",
            "0 9 * MON *",
            "0 9 MON * *",
        ] {
            assert!(parse_cron(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn rates_take_schedulers_units() {
        assert_eq!(parse_rate("5 minutes").unwrap().aws(), "rate(5 minutes)");
        assert_eq!(parse_rate("1 hour").unwrap().aws(), "rate(1 hour)");
        assert_eq!(parse_rate("1 days").unwrap().aws(), "rate(1 day)");
        for bad in ["", "5", "0 minutes", "-1 minutes", "5 seconds", "1.5 hours", "5 minutes please"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} is refused");
        }
        let every_5 = parse_rate("5 minutes").unwrap();
        let start = utc("2026-03-01T10:00:00Z");
        let next = every_5.next_fire_times(Tz::UTC, utc("2026-03-01T10:07:00Z"), start, Some(start), None, 2);
        assert_eq!(next, vec![utc("2026-03-01T10:10:00Z"), utc("2026-03-01T10:15:00Z")]);
        let ended = every_5.next_fire_times(Tz::UTC, start, start, None, Some(utc("2026-03-01T10:05:00Z")), 5);
        assert_eq!(ended, vec![start, utc("2026-03-01T10:05:00Z")], "nothing after end_at");
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert!(parse_timezone("Europe/Berlin").is_ok());
        assert!(parse_timezone("UTC").is_ok());
        assert!(parse_timezone("Mars/Olympus").is_err());
        assert!(parse_timezone("").is_err());
    }

    #[test]
    fn next_fire_times_are_right_across_daylight_saving_changes() {
        // Europe/Berlin springs forward on 2026-03-29 at 02:00 (to 03:00): 02:30 does not exist
        // that day and Scheduler skips it.
        let daily_0230 = parse_cron("30 2 * * *").unwrap();
        assert_eq!(
            times(&daily_0230, "Europe/Berlin", "2026-03-27T12:00:00Z", 4),
            vec![
                "2026-03-28T02:30:00+01:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00",
                "2026-04-01T02:30:00+02:00"
            ]
        );
        // It falls back on 2026-10-25 at 03:00 (to 02:00): 02:30 happens twice; it fires once.
        assert_eq!(
            times(&daily_0230, "Europe/Berlin", "2026-10-24T12:00:00Z", 3),
            vec!["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]
        );
        // 09:00 on weekdays keeps its wall-clock time across the change: 08:00 UTC, then 07:00.
        let weekdays = parse_cron("0 9 * * MON-FRI").unwrap();
        let next = weekdays.next_fire_times(
            Tz::Europe__Berlin,
            utc("2026-10-22T12:00:00Z"),
            utc("2026-10-22T12:00:00Z"),
            None,
            None,
            3,
        );
        assert_eq!(next, vec![utc("2026-10-23T07:00:00Z"), utc("2026-10-26T08:00:00Z"), utc("2026-10-27T08:00:00Z")]);
        // Every minute through the autumn repeat: the repeated hour is skipped, 5 times still come.
        let every_minute = parse_cron("* * * * *").unwrap();
        let around = times(&every_minute, "Europe/Berlin", "2026-10-25T00:58:00Z", 5);
        assert_eq!(
            around,
            vec![
                "2026-10-25T02:59:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T03:01:00+01:00",
                "2026-10-25T03:02:00+01:00",
                "2026-10-25T03:03:00+01:00"
            ]
        );
        // Hourly through the spring change: 02:00 local does not exist, 5 fire times still come.
        let hourly = parse_cron("0 * * * *").unwrap();
        assert_eq!(
            times(&hourly, "Europe/Berlin", "2026-03-28T23:30:00Z", 3),
            vec!["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"]
        );
    }

    #[test]
    fn a_pattern_that_never_matches_gives_no_times() {
        let never = parse_cron("0 0 30 2 *").unwrap();
        assert!(times(&never, "UTC", "2026-01-01T00:00:00Z", 5).is_empty());
    }
}
