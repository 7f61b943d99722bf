//! docs/pipeline.md's stage table is generated from the stage declarations: this test fails
//! when they drift apart (run with WYVERN_BLESS=1 to rewrite the table).

use wyvern_pipeline::{Miss, STAGES};

const BEGIN: &str = "<!-- stages:begin -->\n";
const END: &str = "<!-- stages:end -->";

fn render() -> String {
    let mut out = String::from(
        "| table | stage | purpose | matches | next | miss |\n|---|---|---|---|---|---|\n",
    );
    for d in STAGES.iter() {
        let matches: Vec<String> = d.matches.iter().map(|f| format!("{f:?}")).collect();
        let next: Vec<&str> = d.next.iter().map(|s| s.name()).collect();
        let miss = match d.miss {
            Miss::Drop => "drop".to_string(),
            Miss::Continue(s) => s.name().to_string(),
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} |\n",
            wyvern_ofpipe::table_of(d.stage),
            d.name,
            d.purpose,
            matches.join(", "),
            if next.is_empty() {
                "-".to_string()
            } else {
                next.join(", ")
            },
            miss
        ));
    }
    out
}

#[test]
fn pipeline_doc_lists_the_declared_stages() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/pipeline.md");
    let doc = std::fs::read_to_string(path).expect("docs/pipeline.md exists");
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc.find(END).expect("end marker");
    let want = render();
    if std::env::var_os("WYVERN_BLESS").is_some() {
        let new = format!("{}{}{}", &doc[..start], want, &doc[end..]);
        std::fs::write(path, new).expect("rewrite docs/pipeline.md");
        return;
    }
    assert_eq!(
        &doc[start..end],
        want,
        "docs/pipeline.md is stale: rerun with WYVERN_BLESS=1"
    );
}
