//! Request categories from cheap prompt features (keywords and shape of the last user
//! message): code, translation, summarization, extraction, math, analysis, generation,
//! question, chat. Spend is grouped by them and the difficulty router explains with them.

/// Cues of more than one word, or with symbols, found anywhere in the text.
const CODE_PHRASES: &[&str] = &["```", "stack trace", "unit test", "c++"];
const TRANSLATION_PHRASES: &[&str] = &[
    "in french",
    "in spanish",
    "in german",
    "in english",
    "in japanese",
    "in chinese",
    "into french",
    "into spanish",
    "into german",
    "into english",
];
const SUMMARY_PHRASES: &[&str] = &["tl;dr", "sum up", "key points", "in short"];
const EXTRACTION_PHRASES: &[&str] = &["list all", "find all", "pull out", "as json", "in json"];
const MATH_PHRASES: &[&str] = &["how many", "how much", "prove that", "sum of", " = "];
const ANALYSIS_PHRASES: &[&str] = &["pros and cons", "explain why", "trade-off"];
const GENERATION_PHRASES: &[&str] = &["blog post", "come up with"];
const QUESTION_STARTS: &[&str] = &[
    "what", "who", "when", "where", "why", "how", "which", "is ", "are ", "can ", "could ",
    "does ", "do ", "should ",
];

/// The category a single word is a cue of (whole words only: "sql" is not in "mysql").
fn word_cue(w: &str) -> Option<usize> {
    Some(match w {
        "fn" | "def" | "class" | "function" | "compile" | "traceback" | "regex" | "sql"
        | "python" | "javascript" | "typescript" | "rust" | "golang" | "java" | "bug"
        | "refactor" | "snippet" | "code" => CODE,
        "translate" | "translation" => TRANSLATION,
        "summarize" | "summarise" | "summary" | "tldr" => SUMMARY,
        "extract" | "parse" | "entities" | "fields" => EXTRACTION,
        "solve" | "calculate" | "equation" | "integral" | "derivative" | "probability"
        | "percent" | "polynomial" | "theorem" | "matrix" | "arithmetic" => MATH,
        "analyze" | "analyse" | "analysis" | "compare" | "evaluate" | "assess" | "critique"
        | "tradeoff" => ANALYSIS,
        "write" | "generate" | "draft" | "compose" | "create" | "story" | "poem" | "essay"
        | "email" | "slogan" => GENERATION,
        _ => return None,
    })
}

const CODE: usize = 0;
const TRANSLATION: usize = 1;
const SUMMARY: usize = 2;
const EXTRACTION: usize = 3;
const MATH: usize = 4;
const ANALYSIS: usize = 5;
const GENERATION: usize = 6;
const NAMES: [&str; 7] = [
    "code",
    "translation",
    "summarization",
    "extraction",
    "math",
    "analysis",
    "generation",
];

/// Characters of a prompt read to categorize it: the head is enough, and bounds the work on
/// huge prompts.
pub const HEAD_CHARS: usize = 4000;

/// The first `HEAD_CHARS` characters of `text` (a slice of it).
fn head(text: &str) -> &str {
    match text.char_indices().nth(HEAD_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// One pass over the words of the text's head, a few phrase searches; the first category in
/// priority order (code, translation, summarization, extraction, math, analysis, generation)
/// that has a cue wins, then questions, then chat.
pub fn categorize(text: &str) -> &'static str {
    let head = head(text).to_lowercase();
    let mut found = [false; NAMES.len()];
    for w in head
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if let Some(c) = word_cue(w) {
            found[c] = true;
        }
    }
    for (c, phrases) in [
        (CODE, CODE_PHRASES),
        (TRANSLATION, TRANSLATION_PHRASES),
        (SUMMARY, SUMMARY_PHRASES),
        (EXTRACTION, EXTRACTION_PHRASES),
        (MATH, MATH_PHRASES),
        (ANALYSIS, ANALYSIS_PHRASES),
        (GENERATION, GENERATION_PHRASES),
    ] {
        if !found[c] && phrases.iter().any(|p| head.contains(p)) {
            found[c] = true;
        }
    }
    if let Some(c) = found.iter().position(|f| *f) {
        return NAMES[c];
    }
    let t = head.trim();
    if t.ends_with('?') || QUESTION_STARTS.iter().any(|w| t.starts_with(w)) {
        "question"
    } else {
        "chat"
    }
}

#[cfg(test)]
mod tests {
    use super::categorize;

    #[test]
    fn each_category_from_its_cues() {
        assert_eq!(
            categorize("Fix this bug:\n```rust\nfn main() {}\n```"),
            "code"
        );
        assert_eq!(
            categorize("Translate 'good morning' into French"),
            "translation"
        );
        assert_eq!(
            categorize("Summarize the following article: ..."),
            "summarization"
        );
        assert_eq!(
            categorize("Compare Postgres and MySQL for analytics"),
            "analysis"
        );
        assert_eq!(
            categorize("Extract every date from this email as JSON"),
            "extraction"
        );
        assert_eq!(
            categorize("Josh buys a house for $80,000. How much profit did he make?"),
            "math"
        );
        assert_eq!(categorize("Solve 3x + 5 = 20 for x"), "math");
        assert_eq!(categorize("Write a poem about autumn"), "generation");
        assert_eq!(categorize("What is the capital of France?"), "question");
        assert_eq!(categorize("hello there, nice weather"), "chat");
    }
}
