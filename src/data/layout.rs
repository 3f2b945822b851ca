//! Detecting a dataset's layout from its root and split, as the official archives unpack:
//! COCO 2017 (`annotations/{instances,panoptic}_<split>.json`, `<split>/`, the panoptic PNGs in
//! `annotations/panoptic_<split>/` or Detectron2's `panoptic_<split>/`), ADE20K
//! (`ADEChallengeData2016/`), Cityscapes (`leftImg8bit/` + `gtFine/`); and the `DIR/panoptic.json`,
//! `DIR/instances.json`, `DIR/labels/` folders this project's tests and `--export-gt` write.

use std::path::{Path, PathBuf};

use super::coco_instance::CocoInstance;
use super::coco_panoptic::CocoPanoptic;
use super::records::BadRecords;
use super::semantic::SemanticFolder;
use super::spec::{need_dir, Dataset, Kind, OpenOptions, Role};
use super::DataError;

/// Where a dataset's files are.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Layout {
    CocoInstance {
        annotations: PathBuf,
        images: PathBuf,
        /// The COCO 2017 layout (images are checked); else `DIR/instances.json`.
        official: bool,
    },
    CocoPanoptic {
        annotations: PathBuf,
        pngs: PathBuf,
        images: PathBuf,
        official: bool,
    },
    Ade20k {
        root: PathBuf,
        split: String,
    },
    Cityscapes {
        root: PathBuf,
        split: String,
    },
    Semantic {
        dir: PathBuf,
    },
}

fn layout_error(root: &Path, msg: String) -> DataError {
    DataError::Layout(format!("{}: {msg}", root.display()))
}

/// The names of the entries of `dir` that match `pick` (sorted), for "found: ..." hints.
fn found(dir: &Path, pick: impl Fn(&str, bool) -> Option<String>) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let is_dir = e.file_type().ok()?.is_dir();
            pick(&e.file_name().to_string_lossy(), is_dir)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn coco_splits(root: &Path, prefix: &str) -> String {
    found(&root.join("annotations"), |n, is_dir| {
        let s = n.strip_prefix(prefix)?.strip_suffix(".json")?;
        (!is_dir).then(|| s.to_string())
    })
}

fn sub_dirs(dir: &Path) -> String {
    found(dir, |n, is_dir| is_dir.then(|| n.to_string()))
}

fn coco_split(split: Option<&str>, role: Role) -> String {
    split.map_or(
        match role {
            Role::Train => "train2017",
            Role::Val => "val2017",
        }
        .into(),
        String::from,
    )
}

fn coco_instance(
    root: &Path,
    split: Option<&str>,
    role: Role,
) -> Option<Result<Layout, DataError>> {
    let split = coco_split(split, role);
    let annotations = root
        .join("annotations")
        .join(format!("instances_{split}.json"));
    if annotations.is_file() {
        let images = root.join(&split);
        return Some(need_dir(&images, &format!("the {split} images")).map(|()| {
            Layout::CocoInstance {
                annotations,
                images,
                official: true,
            }
        }));
    }
    let legacy = root.join("instances.json");
    legacy.is_file().then(|| {
        Ok(Layout::CocoInstance {
            annotations: legacy,
            images: root.join("images"),
            official: false,
        })
    })
}

fn coco_panoptic(
    root: &Path,
    split: Option<&str>,
    role: Role,
) -> Option<Result<Layout, DataError>> {
    let split = coco_split(split, role);
    let annotations = root
        .join("annotations")
        .join(format!("panoptic_{split}.json"));
    if annotations.is_file() {
        let name = format!("panoptic_{split}");
        let Some(pngs) = [root.join("annotations").join(&name), root.join(&name)]
            .into_iter()
            .find(|p| p.is_dir())
        else {
            return Some(Err(layout_error(
                root,
                format!(
                    "found annotations/{name}.json but not its PNG folder: expected \
                     annotations/{name}/ (as unzipped from annotations/{name}.zip) or {name}/"
                ),
            )));
        };
        let images = root.join(&split);
        return Some(need_dir(&images, &format!("the {split} images")).map(|()| {
            Layout::CocoPanoptic {
                annotations,
                pngs,
                images,
                official: true,
            }
        }));
    }
    let legacy = root.join("panoptic.json");
    legacy.is_file().then(|| {
        Ok(Layout::CocoPanoptic {
            annotations: legacy,
            pngs: root.join("panoptic"),
            images: root.join("images"),
            official: false,
        })
    })
}

/// `ROOT` or `ROOT/ADEChallengeData2016`, whichever holds `images/` and `annotations/`.
fn ade20k(root: &Path, split: Option<&str>, role: Role) -> Option<Result<Layout, DataError>> {
    let base = [root.to_path_buf(), root.join("ADEChallengeData2016")]
        .into_iter()
        .find(|b| b.join("images").is_dir() && b.join("annotations").is_dir())?;
    // ADE20K names its splits `training` / `validation`; accept the usual short names too
    let split = match split {
        None | Some("val") => match role {
            Role::Train if split.is_none() => "training",
            _ => "validation",
        },
        Some("train") => "training",
        Some(s) => s,
    };
    for sub in ["images", "annotations"] {
        if !base.join(sub).join(split).is_dir() {
            return Some(Err(layout_error(
                &base,
                format!(
                    "no {sub}/{split}/ (ADE20K split); splits found: {}",
                    sub_dirs(&base.join(sub))
                ),
            )));
        }
    }
    Some(Ok(Layout::Ade20k {
        root: base,
        split: split.into(),
    }))
}

fn cityscapes(root: &Path, split: Option<&str>, role: Role) -> Option<Result<Layout, DataError>> {
    if !root.join("leftImg8bit").is_dir() || !root.join("gtFine").is_dir() {
        return None;
    }
    let split = split.unwrap_or(match role {
        Role::Train => "train",
        Role::Val => "val",
    });
    for sub in ["leftImg8bit", "gtFine"] {
        if !root.join(sub).join(split).is_dir() {
            return Some(Err(layout_error(
                root,
                format!(
                    "no {sub}/{split}/ (Cityscapes split); splits found: {}",
                    sub_dirs(&root.join(sub))
                ),
            )));
        }
    }
    Some(Ok(Layout::Cityscapes {
        root: root.to_path_buf(),
        split: split.into(),
    }))
}

fn semantic(root: &Path) -> Option<Result<Layout, DataError>> {
    root.join("labels").is_dir().then(|| {
        Ok(Layout::Semantic {
            dir: root.to_path_buf(),
        })
    })
}

/// What each kind expects, for the error when nothing is found.
fn expected(kind: Kind, split: Option<&str>, role: Role) -> String {
    let coco = coco_split(split, role);
    match kind {
        Kind::CocoPanoptic => format!(
            "annotations/panoptic_{coco}.json with annotations/panoptic_{coco}/ and {coco}/ \
             (COCO 2017), or panoptic.json + panoptic/ + images/"
        ),
        Kind::CocoInstance => format!(
            "annotations/instances_{coco}.json with {coco}/ (COCO 2017), or instances.json + images/"
        ),
        Kind::Ade20k => "[ADEChallengeData2016/]images/ + annotations/ (ADE20K)".into(),
        Kind::Cityscapes => "leftImg8bit/ + gtFine/ (Cityscapes)".into(),
        Kind::Semantic => "images/ + labels/".into(),
    }
}

/// Finds the layout of `root` for `kind` (or any kind) and `split` (or the role's default).
pub(crate) fn detect(
    root: &Path,
    kind: Option<Kind>,
    split: Option<&str>,
    role: Role,
) -> Result<Layout, DataError> {
    if !root.is_dir() {
        return Err(layout_error(
            root,
            "expected a dataset folder, found none".into(),
        ));
    }
    let kinds: Vec<Kind> = kind.map_or(
        vec![
            Kind::CocoPanoptic,
            Kind::CocoInstance,
            Kind::Ade20k,
            Kind::Cityscapes,
            Kind::Semantic,
        ],
        |k| vec![k],
    );
    for &k in &kinds {
        let hit = match k {
            Kind::CocoPanoptic => coco_panoptic(root, split, role),
            Kind::CocoInstance => coco_instance(root, split, role),
            Kind::Ade20k => ade20k(root, split, role),
            Kind::Cityscapes => cityscapes(root, split, role),
            Kind::Semantic => semantic(root),
        };
        if let Some(layout) = hit {
            return layout;
        }
    }
    let mut msg = format!(
        "no {} found; expected {}",
        kind.map_or("dataset", |k| k.name()),
        kinds
            .iter()
            .map(|&k| expected(k, split, role))
            .collect::<Vec<_>>()
            .join("; or ")
    );
    if root.join("annotations").is_dir() {
        msg += &format!(
            " (annotations/ holds splits: instances {}; panoptic {})",
            coco_splits(root, "instances_"),
            coco_splits(root, "panoptic_")
        );
    }
    Err(layout_error(root, msg))
}

impl Layout {
    /// Where the data is, for the summary line.
    pub(crate) fn describe(&self) -> String {
        match self {
            Layout::CocoInstance {
                annotations,
                images,
                official,
            } => format!(
                "COCO instance{} {} + {}",
                if *official { " (COCO 2017 layout)" } else { "" },
                annotations.display(),
                images.display()
            ),
            Layout::CocoPanoptic {
                annotations,
                pngs,
                official,
                ..
            } => format!(
                "COCO panoptic{} {} + {}",
                if *official { " (COCO 2017 layout)" } else { "" },
                annotations.display(),
                pngs.display()
            ),
            Layout::Ade20k { root, split } => format!("ADE20K {} split {split}", root.display()),
            Layout::Cityscapes { root, split } => {
                format!("Cityscapes {} split {split}", root.display())
            }
            Layout::Semantic { dir } => format!("semantic {}", dir.display()),
        }
    }

    /// Opens the data; bad records go to `bad`.
    pub(crate) fn open(
        &self,
        opts: &OpenOptions,
        bad: &mut BadRecords,
    ) -> Result<Dataset, DataError> {
        Ok(match self {
            Layout::CocoInstance {
                annotations,
                images,
                official,
            } => {
                let check = *official || images.is_dir();
                Dataset::Instance(CocoInstance::open_checked(annotations, images, check, bad)?)
            }
            Layout::CocoPanoptic {
                annotations,
                pngs,
                images,
                official,
            } => {
                let check = *official || images.is_dir();
                Dataset::Panoptic(CocoPanoptic::open_checked(
                    annotations,
                    pngs,
                    images,
                    check,
                    bad,
                )?)
            }
            Layout::Ade20k { root, split } => {
                let mut ds = SemanticFolder::open_ade20k(root, split, bad)?;
                ds.check_sizes(bad);
                Dataset::Semantic(ds)
            }
            Layout::Cityscapes { root, split } => {
                let mut ds = SemanticFolder::open_cityscapes(root, split, bad)?;
                ds.check_sizes(bad);
                Dataset::Semantic(ds)
            }
            Layout::Semantic { dir } => {
                Dataset::Semantic(SemanticFolder::open(dir, opts.reduce_labels)?)
            }
        })
    }
}
