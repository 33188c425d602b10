//! Request categories from cheap prompt features (keywords and shape of the last user
//! message): summarization, translation, question, generation, analysis, code, chat.

const CODE: &[&str] = &[
    "```",
    "fn ",
    "def ",
    "class ",
    "function",
    "compile",
    "stack trace",
    "traceback",
    "regex",
    "sql",
    "python",
    "javascript",
    "typescript",
    "rust",
    "golang",
    "java ",
    "c++",
    "bug",
    "refactor",
    "unit test",
    "snippet",
    "code",
];
const TRANSLATION: &[&str] = &[
    "translate",
    "translation",
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
const SUMMARY: &[&str] = &[
    "summarize",
    "summarise",
    "summary",
    "tl;dr",
    "tldr",
    "sum up",
    "key points",
    "in short",
];
const ANALYSIS: &[&str] = &[
    "analyze",
    "analyse",
    "analysis",
    "compare",
    "evaluate",
    "pros and cons",
    "assess",
    "critique",
    "explain why",
    "trade-off",
    "tradeoff",
];
const GENERATION: &[&str] = &[
    "write ",
    "generate",
    "draft",
    "compose",
    "create ",
    "story",
    "poem",
    "essay",
    "email",
    "blog post",
    "slogan",
    "come up with",
];
const QUESTION_STARTS: &[&str] = &[
    "what", "who", "when", "where", "why", "how", "which", "is ", "are ", "can ", "could ",
    "does ", "do ", "should ",
];

/// Characters of a prompt read to categorize it: the head is enough, and bounds the work on
/// huge prompts.
pub const HEAD_CHARS: usize = 4000;

pub fn categorize(text: &str) -> &'static str {
    let head: String = text
        .chars()
        .take(HEAD_CHARS)
        .collect::<String>()
        .to_lowercase();
    let words: std::collections::HashSet<&str> = head
        .split(|c: char| !c.is_alphanumeric() && c != '+')
        .filter(|w| !w.is_empty())
        .collect();
    // A cue of one plain word matches whole words only ("sql" is not in "mysql"); a cue with
    // a space or a symbol matches anywhere.
    let has = |cues: &[&str]| {
        cues.iter().any(|c| {
            if c.chars().all(char::is_alphanumeric) {
                words.contains(c)
            } else {
                head.contains(c)
            }
        })
    };
    if has(CODE) {
        "code"
    } else if has(TRANSLATION) {
        "translation"
    } else if has(SUMMARY) {
        "summarization"
    } else if has(ANALYSIS) {
        "analysis"
    } else if has(GENERATION) {
        "generation"
    } else if head.trim_end().ends_with('?')
        || QUESTION_STARTS
            .iter()
            .any(|w| head.trim_start().starts_with(w))
    {
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
        assert_eq!(categorize("Write a poem about autumn"), "generation");
        assert_eq!(categorize("What is the capital of France?"), "question");
        assert_eq!(categorize("hello there, nice weather"), "chat");
    }
}
