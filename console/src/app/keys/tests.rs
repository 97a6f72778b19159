//! Tests of the key table itself (every listed key parses into presses that match it), and `presses_of`, which the
//! app's tests use to press every key a binding lists.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The presses a binding's `keys` text stands for (for tests that press every listed key).
pub fn presses_of(keys: &str) -> Vec<KeyEvent> {
    let tokens: Vec<&str> = keys.split_whitespace().collect();
    tokens
        .iter()
        .filter(|t| !(tokens.len() > 1 && **t == "/"))
        .map(|t| {
            if let Some(c) = t.strip_prefix('^') {
                return KeyEvent::new(KeyCode::Char(c.chars().next().unwrap_or(' ')), KeyModifiers::CONTROL);
            }
            let code = match *t {
                "enter" => KeyCode::Enter,
                "esc" => KeyCode::Esc,
                "space" => KeyCode::Char(' '),
                "tab" => KeyCode::Tab,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "pgup" => KeyCode::PageUp,
                "pgdn" => KeyCode::PageDown,
                "↓" => KeyCode::Down,
                "↑" => KeyCode::Up,
                other => KeyCode::Char(other.chars().next().unwrap_or(' ')),
            };
            KeyEvent::new(code, KeyModifiers::NONE)
        })
        .collect()
}

use super::{matches, BINDINGS};

fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent::new(code, modifiers)
}

#[test]
fn keys_text_is_what_matches() {
    let none = KeyModifiers::NONE;
    assert!(matches("y / enter", &press(KeyCode::Enter, none)));
    assert!(matches("y / enter", &press(KeyCode::Char('y'), none)));
    assert!(
        !matches("y / enter", &press(KeyCode::Char('/'), none)),
        "a lone / between keys separates"
    );
    assert!(matches("/", &press(KeyCode::Char('/'), none)));
    assert!(matches("q ^c", &press(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(!matches("q ^c", &press(KeyCode::Char('c'), none)));
    assert!(matches("1..9 0", &press(KeyCode::Char('7'), none)));
    assert!(matches("1..9 0", &press(KeyCode::Char('0'), none)));
    assert!(matches("s S", &press(KeyCode::Char('S'), KeyModifiers::SHIFT)));
    assert!(matches("j k ↓ ↑", &press(KeyCode::Down, none)));
    assert!(!matches("x ^k", &press(KeyCode::Char('x'), KeyModifiers::CONTROL)));
}

/// Every key text in the table parses into presses that match it: nothing is listed that no press can reach.
#[test]
fn every_listed_key_can_be_pressed() {
    for binding in BINDINGS {
        for key in presses_of(binding.keys) {
            assert!(
                matches(binding.keys, &key),
                "{key:?} of “{}” matches no press",
                binding.keys
            );
        }
    }
}
