//! Class names and which classes are "things" (countable objects) rather than "stuff".
//!
//! Names come from the checkpoint's `id2label`. Thing/stuff comes, in order of preference,
//! from a `categories.json` beside the checkpoint (COCO `categories` with `isthing`, in label
//! order — what `train` writes), from the COCO-panoptic convention when the model has the 133
//! COCO-panoptic classes (the first 80 are things), or else every class counts as a thing.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use serde::Deserialize;

/// Label names and thing/stuff flags, indexed by label id.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelInfo {
    names: Vec<String>,
    things: Vec<bool>,
}

#[derive(Deserialize)]
struct Category {
    name: String,
    #[serde(default = "one")]
    isthing: u8,
}

fn one() -> u8 {
    1
}

impl LabelInfo {
    pub fn new(names: Vec<String>, things: Vec<bool>) -> Self {
        assert_eq!(names.len(), things.len());
        Self { names, things }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// From `id2label` names and an optional categories file (see the module docs).
    pub fn load(names: Vec<String>, categories: Option<&Path>) -> Result<Self, String> {
        match categories.filter(|p| p.exists()) {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Self::from_categories(names, Some((&text, &path.display().to_string())))
            }
            None => Self::from_categories(names, None),
        }
    }

    /// From `id2label` names and the text of a categories file, if there is one (`origin`
    /// names it in errors).
    pub fn from_categories(
        names: Vec<String>,
        categories: Option<(&str, &str)>,
    ) -> Result<Self, String> {
        if let Some((text, origin)) = categories {
            let cats: Vec<Category> = serde_json::from_str(text)
                .map_err(|e| format!("{origin}: not a list of categories: {e}"))?;
            if cats.len() != names.len() {
                return Err(format!(
                    "{origin}: {} categories but the model has {} labels",
                    cats.len(),
                    names.len()
                ));
            }
            let things = cats.iter().map(|c| c.isthing != 0).collect();
            let names = names
                .into_iter()
                .zip(&cats)
                .map(|(n, c)| if n.is_empty() { c.name.clone() } else { n })
                .collect();
            return Ok(Self { names, things });
        }
        let n = names.len();
        let things = if n == 133 {
            (0..n).map(|i| i < 80).collect()
        } else {
            vec![true; n]
        };
        Ok(Self { names, things })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    pub fn name(&self, label: u32) -> String {
        self.names
            .get(label as usize)
            .cloned()
            .unwrap_or_else(|| format!("label{label}"))
    }
    pub fn is_thing(&self, label: u32) -> bool {
        self.things.get(label as usize).copied().unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco_panoptic_convention_and_categories_file() {
        let names: Vec<String> = (0..133).map(|i| format!("c{i}")).collect();
        let l = LabelInfo::load(names, None).unwrap();
        assert!(l.is_thing(79) && !l.is_thing(80));
        let dir = std::env::temp_dir().join(format!("m2f-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("categories.json");
        std::fs::write(
            &path,
            r#"[{"name":"sky","isthing":0},{"name":"ball","isthing":1}]"#,
        )
        .unwrap();
        let l = LabelInfo::load(vec!["".into(), "ball".into()], Some(&path)).unwrap();
        assert_eq!(l.name(0), "sky");
        assert!(!l.is_thing(0) && l.is_thing(1));
        let err = LabelInfo::load(vec!["a".into()], Some(&path)).unwrap_err();
        assert!(
            err.contains("2 categories") && err.contains("1 labels"),
            "{err}"
        );
    }
}
