//! A `Set-Cookie` `Expires` date, read the lenient way RFC 6265 (5.1.1)
//! asks: servers send `Wed, 21 Oct 2015 07:28:00 GMT`, `Wednesday,
//! 21-Oct-15 07:28:00 GMT`, `Thu, 01-Jan-1970 00:00:01 GMT` and worse, and
//! a browser reads them all by picking a time, a day, a month and a year
//! out of the tokens in any order.

/// Seconds since the Unix epoch (UTC) that `date` names, or `None` if it
/// is not a cookie date (the attribute is then ignored, as RFC 6265 says).
pub fn unix_seconds(date: &str) -> Option<i64> {
    let mut found = Found::default();
    for token in date.split(is_delimiter).filter(|t| !t.is_empty()) {
        found.take(token);
    }
    found.seconds()
}

/// RFC 6265's delimiters: every character that separates date tokens.
fn is_delimiter(c: char) -> bool {
    matches!(c, '\t' | ' '..='/' | ';'..='@' | '['..='`' | '{'..='~')
}

/// The parts found so far, each taken from the first token that fits it.
#[derive(Default)]
struct Found {
    time: Option<(u32, u32, u32)>,
    day: Option<u32>,
    month: Option<u32>,
    year: Option<u32>,
}

impl Found {
    /// Takes `token` as the first part, in RFC 6265's order, it fits and
    /// that is still missing.
    fn take(&mut self, token: &str) {
        if self.time.is_none()
            && let Some(time) = time_of(token)
        {
            self.time = Some(time);
        } else if self.day.is_none()
            && let Some(day) = leading_number(token, 1, 2)
        {
            self.day = Some(day);
        } else if self.month.is_none()
            && let Some(month) = month_of(token)
        {
            self.month = Some(month);
        } else if self.year.is_none()
            && let Some(year) = leading_number(token, 2, 4)
        {
            self.year = Some(match year {
                70..=99 => year + 1900,
                0..=69 => year + 2000,
                _ => year,
            });
        }
    }

    /// The instant the parts name, if all are there and in range.
    fn seconds(&self) -> Option<i64> {
        let (hour, minute, second) = self.time?;
        let (day, month, year) = (self.day?, self.month?, self.year?);
        let valid =
            (1..=31).contains(&day) && year >= 1601 && hour <= 23 && minute <= 59 && second <= 59;
        if !valid {
            return None;
        }
        let days = days_since_epoch(i64::from(year), month, day);
        Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
    }
}

/// `hh:mm:ss` (one or two digits each), possibly followed by non-digits.
fn time_of(token: &str) -> Option<(u32, u32, u32)> {
    let mut fields = token.splitn(3, ':');
    let hour = whole_number(fields.next()?, 1, 2)?;
    let minute = whole_number(fields.next()?, 1, 2)?;
    let second = leading_number(fields.next()?, 1, 2)?;
    Some((hour, minute, second))
}

/// The number `text` is, if it is `min..=max` digits and nothing else.
fn whole_number(text: &str, min: usize, max: usize) -> Option<u32> {
    let digits = text.len();
    let all_digits = text.bytes().all(|b| b.is_ascii_digit());
    (all_digits && (min..=max).contains(&digits))
        .then(|| text.parse().ok())
        .flatten()
}

/// The number `token` starts with, if it starts with `min..=max` digits
/// followed by nothing or by a non-digit.
fn leading_number(token: &str, min: usize, max: usize) -> Option<u32> {
    let digits = token.bytes().take_while(u8::is_ascii_digit).count();
    whole_number(&token[..digits], min, max)
}

/// The month (1–12) `token` names by its first three letters.
fn month_of(token: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let prefix = token.get(..3)?.to_ascii_lowercase();
    let index = MONTHS.iter().position(|m| *m == prefix)?;
    Some(index as u32 + 1)
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian
/// calendar (Howard Hinnant's `days_from_civil`); a day past the month's
/// end rolls into the next, which is as near as a bad date gets.
fn days_since_epoch(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dates_servers_send_are_read() {
        // 2015-10-21T07:28:00Z
        let instant = Some(1_445_412_480);
        assert_eq!(unix_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), instant);
        assert_eq!(unix_seconds("Wednesday, 21-Oct-15 07:28:00 GMT"), instant);
        assert_eq!(unix_seconds("Wed Oct 21 07:28:00 2015"), instant);
        assert_eq!(unix_seconds("21 october 2015 7:28:0"), instant);
        assert_eq!(unix_seconds("Thu, 01-Jan-1970 00:00:01 GMT"), Some(1));
        assert_eq!(
            unix_seconds("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        assert_eq!(
            unix_seconds("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(253_402_300_799)
        );
    }

    #[test]
    fn what_is_not_a_date_is_none() {
        for bad in [
            "",
            "tomorrow",
            "Wed, 21 Oct 2015 GMT",
            "Wed, 21 Oct 2015 25:00:00 GMT",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wed, 21 Oct 1600 07:28:00 GMT",
            "Wed, 21 Oct 07:28:00 GMT",
            "99999999999999999999:1:1 1 jan 2000",
        ] {
            assert_eq!(unix_seconds(bad), None, "{bad:?}");
        }
    }
}
