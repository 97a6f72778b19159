//! The human output of the twin: a plain text table (a header and columns padded with spaces, numbers right-aligned)
//! that reads well in a terminal and still cuts cleanly with `awk`. Hand-written: it is twenty lines, and a table
//! crate (comfy-table, tabled) would bring borders, wrapping and terminal-width logic that scripts do not want.

/// The table as text: `head` over `rows`, columns two spaces apart; a column whose cells are all numbers is
/// right-aligned.
pub fn render(head: &[&str], rows: &[Vec<String>]) -> String {
    let columns = head.len();
    let numeric: Vec<bool> = (0..columns)
        .map(|i| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r.get(i)
                        .is_some_and(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit() || ch == '.'))
                })
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns).map(width).collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| match (numeric[i], i + 1 == columns) {
                (true, _) => format!("{c:>w$}", w = widths[i]),
                (false, true) => c.to_string(),
                (false, false) => format!("{c:<w$}", w = widths[i]),
            })
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(head.to_vec())];
    for r in rows {
        out.push(line(
            (0..columns).map(|i| r.get(i).map_or("", String::as_str)).collect(),
        ));
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_numbers_go_right() {
        let rows = vec![
            vec!["orders".to_string(), "12".to_string(), "ok".to_string()],
            vec!["orders.dlq".to_string(), "3".to_string(), "paused".to_string()],
        ];
        assert_eq!(
            render(&["NAME", "READY", "STATE"], &rows),
            "NAME        READY  STATE\norders         12  ok\norders.dlq      3  paused\n"
        );
        assert_eq!(render(&["NAME", "READY"], &[]), "NAME  READY\n");
    }
}
