//! The built-in maskers.

use super::{Action, Rule, Side};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masker {
    Email,
    Phone,
    Card,
    ApiKey,
}

impl Masker {
    pub fn parse(s: &str) -> Option<Masker> {
        Some(match s {
            "email" => Masker::Email,
            "phone" => Masker::Phone,
            "card" => Masker::Card,
            "api_key" => Masker::ApiKey,
            _ => return None,
        })
    }

    fn pattern(self) -> &'static str {
        match self {
            Masker::Email => r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
            // International (+CC and 6-14 more digits in groups) or NANP-style 3-3-4.
            Masker::Phone => {
                r"(?:\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}\d)|(?:\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b)"
            }
            // Grouped 4-4-4-(1..7) or Amex 4-6-5 with spaces or dashes, or 13-19 digits in a
            // row; each must stand alone (a number before it is not taken in).
            Masker::Card => {
                r"\b(?:\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{5}|\d{13,19})\b"
            }
            Masker::ApiKey => {
                r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}|\bxox[abprs]-[A-Za-z0-9-]{10,}|\bAIza[0-9A-Za-z_-]{35}"
            }
        }
    }

    fn replacement(self) -> &'static str {
        match self {
            Masker::Email => "[EMAIL]",
            Masker::Phone => "[PHONE]",
            Masker::Card => "[CARD]",
            Masker::ApiKey => "[API_KEY]",
        }
    }

    pub fn rule(self, side: Side) -> Rule {
        Rule {
            name: format!("mask:{self:?}").to_lowercase(),
            #[expect(clippy::expect_used, reason = "built-in patterns are tested")]
            regex: regex::Regex::new(self.pattern()).expect("a built-in pattern"),
            action: Action::Redact(self.replacement().to_owned()),
            side,
            luhn: self == Masker::Card,
        }
    }
}

/// Whether the digits of `s` (13 to 19 of them) pass the Luhn check.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::super::Guardrails;
    use super::*;

    fn all() -> Guardrails {
        Guardrails {
            rules: [Masker::ApiKey, Masker::Card, Masker::Email, Masker::Phone]
                .map(|m| m.rule(Side::Both))
                .to_vec(),
            hold: 256,
        }
    }

    #[test]
    fn masks_what_it_should_and_nothing_else() {
        let g = all();
        let text = "Mail bob.smith@example.co.uk or call +1 415-555-0132 / (212) 555-0198; \
                    card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnop1234; \
                    order 1234 5678 9012 3456 and DROP TABLE users; version 1.2.3; \
                    qty 2 5500-0000-0000-0004, ref 555 4111111111111111";
        let out = g.redact(text, Side::Input);
        assert_eq!(
            out,
            "Mail [EMAIL] or call [PHONE] / [PHONE]; card [CARD], key [API_KEY]; \
             order 1234 5678 9012 3456 and DROP TABLE users; version 1.2.3; \
             qty 2 [CARD], ref 555 [CARD]"
        );
        assert!(g.denies(text, Side::Input).is_none(), "maskers never deny");
    }

    #[test]
    fn luhn_checks_card_numbers() {
        assert!(luhn("4111-1111-1111-1111"));
        assert!(luhn("5500 0000 0000 0004"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(!luhn("4111"));
    }
}
