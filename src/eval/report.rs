//! The numbers of one evaluation: serialized as the JSON report (`evaluate --out`, per-category
//! numbers included) and printed as tables like the reference tools print them (in percent).

use serde::Serialize;

use super::{ap, miou, pq};

/// The numbers of one evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub data: String,
    pub images: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panoptic: Option<pq::PqResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<ap::ApResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic: Option<miou::SemSegResult>,
}

/// `100 v` with two decimals, or `-` for the −1 "not computed" of COCO's numbers.
fn percent(v: f64) -> String {
    if v < 0.0 {
        format!("{:>6}", "-")
    } else {
        format!("{:6.2}", 100.0 * v)
    }
}

impl Report {
    /// The summary table.
    pub fn table(&self) -> String {
        let mut s = format!("{} ({} images)\n", self.data, self.images);
        if let Some(p) = &self.panoptic {
            s += &format!(
                "{:10}| {:>6} {:>6} {:>6} {:>4}\n",
                "", "PQ", "SQ", "RQ", "N"
            );
            s += &format!("{}\n", "-".repeat(38));
            for (name, r) in [("All", p.all), ("Things", p.things), ("Stuff", p.stuff)] {
                // a split with no category to average has no numbers
                let v = |x: f64| percent(if r.n == 0 { -1.0 } else { x });
                s += &format!("{name:10}| {} {} {} {:4}\n", v(r.pq), v(r.sq), v(r.rq), r.n);
            }
        }
        if let Some(a) = &self.instance {
            let names = [
                "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
                "ARl",
            ];
            let row = |cells: Vec<String>| cells.join(" ") + "\n";
            s += &row(names.iter().map(|n| format!("{n:>6}")).collect());
            s += &row(a.stats().iter().map(|&v| percent(v)).collect());
        }
        if let Some(m) = &self.semantic {
            s += &format!("{:>6} {:>6} {:>6} {:>6}\n", "mIoU", "fwIoU", "mACC", "pACC");
            let cells = [m.miou, m.fwiou, m.macc, m.pacc].map(percent);
            s += &(cells.join(" ") + "\n");
        }
        s
    }

    /// One row per category: PQ / SQ / RQ and the TP / FP / FN counts (panoptic), AP
    /// (instance), IoU and accuracy (semantic). `-`: nothing to score (no segment, no ground
    /// truth, class absent).
    pub fn per_category_table(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.panoptic {
            s += &format!(
                "{:>5} {:24} {:5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
                "id", "category", "kind", "PQ", "SQ", "RQ", "TP", "FP", "FN"
            );
            for (id, c) in &p.per_class {
                let seen = c.tp + c.fp + c.fn_ > 0;
                let v = |x: f64| percent(if seen { x } else { -1.0 });
                let kind = if c.isthing { "thing" } else { "stuff" };
                s += &format!(
                    "{id:>5} {:24} {kind:5} {} {} {} {:6} {:6} {:6}\n",
                    clip(&c.name),
                    v(c.pq),
                    v(c.sq),
                    v(c.rq),
                    c.tp,
                    c.fp,
                    c.fn_
                );
            }
        }
        if let Some(a) = &self.instance {
            s += &format!("{:>5} {:24} {:>6}\n", "id", "category", "AP");
            for (id, c) in &a.per_category {
                s += &format!("{id:>5} {:24} {}\n", clip(&c.name), percent(c.ap));
            }
        }
        if let Some(m) = &self.semantic {
            s += &format!("{:>5} {:24} {:>6} {:>6}\n", "class", "name", "IoU", "Acc");
            for (c, (iou, acc)) in m.per_class_iou.iter().zip(&m.per_class_acc).enumerate() {
                let name = m.class_names.get(c).map_or("", String::as_str);
                let v = |x: &Option<f64>| percent(x.unwrap_or(-1.0));
                s += &format!("{c:>5} {:24} {} {}\n", clip(name), v(iou), v(acc));
            }
        }
        s
    }
}

/// A name cut to the table's column.
fn clip(name: &str) -> String {
    name.chars().take(24).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Categories, Category, Panoptic, SegmentInfo};

    #[test]
    fn per_category_rows_name_each_category() {
        let cats = Categories::new(vec![
            Category {
                id: 7,
                name: "person".into(),
                isthing: true,
                color: None,
            },
            Category {
                id: 9,
                name: "sky".into(),
                isthing: false,
                color: None,
            },
        ])
        .unwrap();
        let seg = |id, category_id| SegmentInfo {
            id,
            category_id,
            iscrowd: false,
            area: 2.0,
            bbox: None,
        };
        let pan = Panoptic {
            height: 1,
            width: 2,
            ids: vec![1, 1],
            segments: vec![seg(1, 7)],
        };
        let mut acc = pq::PqAccumulator::new(&cats);
        acc.add("x", &pan, &pan, &cats).unwrap();
        let report = Report {
            data: "d".into(),
            images: 1,
            panoptic: Some(acc.finish(&cats)),
            instance: None,
            semantic: Some(acc.pixels().finish()),
        };
        let table = report.per_category_table();
        let person = table.lines().find(|l| l.contains("person")).unwrap();
        assert!(
            person.contains("thing") && person.contains("100.00"),
            "{table}"
        );
        let sky = table.lines().find(|l| l.contains("sky")).unwrap();
        assert!(sky.contains('-') && !sky.contains("100.00"), "{table}");
        // semantic rows: class 0 scored, class 1 absent
        assert!(
            table.contains("    0 ") && table.contains("    1 "),
            "{table}"
        );
        assert!(
            report.table().contains("Stuff     |      -"),
            "{}",
            report.table()
        );
    }
}
