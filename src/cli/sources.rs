//! Input sources as GNU parallel reads them: `::: ARGS`, `:::: FILES` (`-` is stdin),
//! `-a FILE` (repeatable), `:::+` / `::::+` to link a source to the one before it, and
//! stdin when there is no other. Several sources give every combination (the first
//! varies slowest); linked ones go in step (as far as the shortest). Records of files
//! and stdin end at the delimiter (newline, `-0` NUL, `-d CHAR`); `--colsep REGEX` cuts
//! each value into fields for `{1} {2} ...`.
//!
//! The first source streams (a record is run as soon as it is read, `tail -f` works);
//! the others are read whole first, as they are needed for every record of the first.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::input::LineSource;

/// Where the values of one input source come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The words after `:::`.
    Args(Vec<Vec<u8>>),
    /// Records of a file (`::::`, `-a`); `-` is stdin.
    File(PathBuf),
}

impl Origin {
    fn is_stdin(&self) -> bool {
        matches!(self, Origin::File(p) if p.as_os_str() == "-")
    }
}

/// Sources linked with `:::+` go in step; each group is one dimension of the product.
pub type Group = Vec<Origin>;

/// A bad input-source description.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    /// `:::+` / `::::+` first: there is nothing to link to.
    #[error("`{0}` links to the input source before it, and there is none")]
    NothingToLink(String),
    /// `:::: ` with no file after it.
    #[error("`::::` needs at least one file after it")]
    NoFile,
    /// `-d` of more than one byte.
    #[error("--delimiter {0:?}: give one character (or \\n, \\t, \\0)")]
    Delimiter(String),
    /// Two sources read stdin.
    #[error("stdin (`-`) can be read by one input source only")]
    StdinTwice,
}

/// The command words and the sources that follow them (`echo {} ::: a b` gives
/// `["echo", "{}"]` and one source).
pub fn split_command(words: &[OsString]) -> Result<(Vec<OsString>, Vec<Group>), SourceError> {
    let marker = |w: &OsStr| matches!(w.as_bytes(), b":::" | b":::+" | b"::::" | b"::::+");
    let first = words.iter().position(|w| marker(w)).unwrap_or(words.len());
    let command = words[..first].to_vec();
    let mut groups: Vec<Group> = Vec::new();
    let mut i = first;
    while i < words.len() {
        let mark = words[i].as_bytes();
        let end = words[i + 1..]
            .iter()
            .position(|w| marker(w))
            .map_or(words.len(), |n| i + 1 + n);
        let values = &words[i + 1..end];
        let linked = mark.ends_with(b"+");
        let origins: Vec<Origin> = if mark.starts_with(b"::::") {
            if values.is_empty() {
                return Err(SourceError::NoFile);
            }
            values
                .iter()
                .map(|v| Origin::File(PathBuf::from(v)))
                .collect()
        } else {
            vec![Origin::Args(
                values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            )]
        };
        if linked {
            let last = groups.last_mut().ok_or_else(|| {
                SourceError::NothingToLink(String::from_utf8_lossy(mark).into_owned())
            })?;
            last.extend(origins);
        } else if mark.starts_with(b"::::") {
            // Each file after `::::` is a source of its own.
            groups.extend(origins.into_iter().map(|o| vec![o]));
        } else {
            groups.push(origins);
        }
        i = end;
    }
    Ok((command, groups))
}

/// The byte `-d` names: one character, or `\n`, `\t`, `\0`, `\\`.
pub fn delimiter(text: &str) -> Result<u8, SourceError> {
    match text {
        "\\n" => Ok(b'\n'),
        "\\t" => Ok(b'\t'),
        "\\0" => Ok(0),
        "\\\\" => Ok(b'\\'),
        t if t.len() == 1 => Ok(t.as_bytes()[0]),
        t => Err(SourceError::Delimiter(t.to_string())),
    }
}

/// One job's input: a value per source, cut into fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `{1} {2} ...`: the values' fields in order, when they are not the values
    /// themselves (see [`Record::fields`]).
    cut: Option<Vec<Vec<u8>>>,
    /// `{}`: the fields joined by spaces (with `--colsep`, the record's columns; as
    /// GNU parallel).
    pub whole: Vec<u8>,
    /// The values, one per source, uncut (for `--results`), when they are not the
    /// whole record alone (see [`Record::values`]).
    several: Option<Vec<Vec<u8>>>,
}

/// How values become a record's fields.
#[derive(Debug, Clone, Default)]
pub struct Columns(pub Option<regex::bytes::Regex>);

impl Record {
    /// `{1} {2} ...`: the values' fields in order (without `--colsep`, the values).
    pub fn fields(&self) -> &[Vec<u8>] {
        self.cut.as_deref().unwrap_or_else(|| self.values())
    }

    /// The values, one per source, uncut (for `--results`).
    pub fn values(&self) -> &[Vec<u8>] {
        self.several
            .as_deref()
            .unwrap_or(std::slice::from_ref(&self.whole))
    }

    /// The whole record, and its values when they are not the whole record alone.
    pub fn into_parts(self) -> (Vec<u8>, Option<Vec<Vec<u8>>>) {
        (self.whole, self.several)
    }
}

impl Columns {
    /// The record of a single value: [`Columns::record`] of `vec![value]`.
    fn record_of_one(&self, value: Vec<u8>) -> Record {
        match &self.0 {
            None => Record {
                cut: None,
                whole: value,
                several: None,
            },
            Some(_) => self.record(vec![value]),
        }
    }

    fn record(&self, mut values: Vec<Vec<u8>>) -> Record {
        // One value and no `--colsep` (a line of one input, the usual case): the value
        // is the field and the whole record, kept once (a record per input line, so
        // three allocations less per line). Otherwise the fields are the values (not
        // copied) or their columns.
        let cut: Option<Vec<Vec<u8>>> = match &self.0 {
            None if values.len() == 1 => {
                let whole = values.pop().unwrap_or_default();
                return Record {
                    cut: None,
                    whole,
                    several: None,
                };
            }
            None => None,
            Some(re) => Some(
                values
                    .iter()
                    .flat_map(|v| re.split(v).map(<[u8]>::to_vec))
                    .collect(),
            ),
        };
        let whole = match cut.as_deref().unwrap_or(&values) {
            [one] => one.clone(),
            more => more.join(&b' '),
        };
        Record {
            cut,
            whole,
            several: Some(values),
        }
    }
}

/// The first source, read as it is needed.
enum First {
    Stream(Rc<RefCell<LineSource>>),
    Read(std::vec::IntoIter<Vec<Vec<u8>>>),
}

/// Every record of the sources, in parallel's order.
pub struct Records {
    first: First,
    /// The other groups, read whole: per group its items, per item a value per source.
    rest: Vec<Vec<Vec<Vec<u8>>>>,
    columns: Columns,
    /// The current item of the first source, and where the odometer over `rest` is.
    current: Option<Vec<Vec<u8>>>,
    odometer: Vec<usize>,
}

impl Records {
    /// Opens the sources (stdin if there are none); `open` gives the file of an origin
    /// that streams. `stdin` is the run's stdin, used by `-`.
    pub fn open(
        groups: Vec<Group>,
        delimiter: u8,
        columns: Columns,
        stdin: impl FnOnce() -> io::Result<std::fs::File>,
        stop: std::sync::Arc<std::sync::atomic::AtomicI32>,
    ) -> Result<Records, OpenError> {
        let groups = if groups.is_empty() {
            vec![vec![Origin::File(PathBuf::from("-"))]]
        } else {
            groups
        };
        if groups.iter().flatten().filter(|o| o.is_stdin()).count() > 1 {
            return Err(OpenError::Source(SourceError::StdinTwice));
        }
        let mut stdin = Some(stdin);
        let mut file_of = |path: &Path| -> Result<std::fs::File, OpenError> {
            if path.as_os_str() == "-" {
                let open = stdin
                    .take()
                    .ok_or(OpenError::Source(SourceError::StdinTwice))?;
                return open().map_err(|e| OpenError::Read(path.to_path_buf(), e));
            }
            if path.is_dir() {
                return Err(OpenError::Read(
                    path.to_path_buf(),
                    io::Error::other("it is a directory"),
                ));
            }
            std::fs::File::open(path).map_err(|e| OpenError::Read(path.to_path_buf(), e))
        };
        let mut groups = groups.into_iter();
        let head = groups.next().unwrap_or_default();
        let first = match head.as_slice() {
            [Origin::File(path)] => First::Stream(Rc::new(RefCell::new(LineSource::new(
                file_of(path)?,
                stop.clone(),
                delimiter,
            )))),
            _ => First::Read(read_group(&head, delimiter, &mut file_of)?.into_iter()),
        };
        let rest = groups
            .map(|g| read_group(&g, delimiter, &mut file_of))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Records {
            first,
            odometer: vec![0; rest.len()],
            rest,
            columns,
            current: None,
        })
    }

    /// The streaming source, for the run to ask whether its next record is at hand.
    pub fn stream(&self) -> Option<Rc<RefCell<LineSource>>> {
        match &self.first {
            First::Stream(s) => Some(s.clone()),
            First::Read(_) => None,
        }
    }

    fn next_first(&mut self) -> Option<io::Result<Vec<Vec<u8>>>> {
        match &mut self.first {
            First::Stream(s) => s.borrow_mut().next_line().map(|r| r.map(|v| vec![v])),
            First::Read(items) => items.next().map(Ok),
        }
    }
}

impl Iterator for Records {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<io::Result<Record>> {
        if self.rest.iter().any(Vec::is_empty) {
            return None;
        }
        // One streamed source (a file or stdin, the usual case): each line is a record
        // of its own, made without a vector of values around it.
        if let (First::Stream(s), true) = (&self.first, self.rest.is_empty()) {
            let line = s.borrow_mut().next_line()?;
            return Some(line.map(|v| self.columns.record_of_one(v)));
        }
        if self.current.is_none() {
            match self.next_first()? {
                Ok(item) => self.current = Some(item),
                Err(e) => return Some(Err(e)),
            }
            self.odometer.iter_mut().for_each(|i| *i = 0);
        }
        if self.rest.is_empty() {
            // One source: each of its items is a record of its own, taken as it is.
            return self.current.take().map(|v| Ok(self.columns.record(v)));
        }
        let current = self.current.as_ref()?;
        let mut values = current.clone();
        for (group, &i) in self.rest.iter().zip(&self.odometer) {
            values.extend(group[i].iter().cloned());
        }
        // Advance: the last source fastest; past the end, the next item of the first.
        let mut carry = true;
        for (n, group) in self.odometer.iter_mut().zip(&self.rest).rev() {
            *n += 1;
            if *n < group.len() {
                carry = false;
                break;
            }
            *n = 0;
        }
        if carry {
            self.current = None;
        }
        Some(Ok(self.columns.record(values)))
    }
}

/// Why the sources could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A bad description.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A file that cannot be read.
    #[error("cannot read the input {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
}

/// A linked group read whole: its items, each a value per source, as far as the
/// shortest source goes.
fn read_group(
    group: &[Origin],
    delimiter: u8,
    file_of: &mut impl FnMut(&Path) -> Result<std::fs::File, OpenError>,
) -> Result<Vec<Vec<Vec<u8>>>, OpenError> {
    let mut columns: Vec<Vec<Vec<u8>>> = Vec::new();
    for origin in group {
        columns.push(match origin {
            Origin::Args(values) => values.clone(),
            Origin::File(path) => {
                let mut bytes = Vec::new();
                file_of(path)?
                    .read_to_end(&mut bytes)
                    .map_err(|e| OpenError::Read(path.clone(), e))?;
                split_records(&bytes, delimiter)
            }
        });
    }
    let len = columns.iter().map(Vec::len).min().unwrap_or(0);
    Ok((0..len)
        .map(|i| columns.iter().map(|c| c[i].clone()).collect())
        .collect())
}

/// Records of `bytes`, each ended by `delimiter` (the last one may lack it).
pub fn split_records(bytes: &[u8], delimiter: u8) -> Vec<Vec<u8>> {
    let mut records: Vec<Vec<u8>> = bytes
        .split(|b| *b == delimiter)
        .map(<[u8]>::to_vec)
        .collect();
    if bytes.is_empty() || bytes.ends_with(&[delimiter]) {
        records.pop();
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn b(values: &[&str]) -> Vec<Vec<u8>> {
        values.iter().map(|v| v.as_bytes().to_vec()).collect()
    }

    fn records(groups: Vec<Group>, columns: Columns) -> Vec<Record> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        Records::open(
            groups,
            b'\n',
            columns,
            || Err(io::Error::other("no stdin")),
            stop,
        )
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    fn wholes(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.whole).into_owned())
            .collect()
    }

    #[test]
    fn markers_split_the_command_from_its_sources() {
        let (command, groups) = split_command(&os(&[
            "echo", "{}", ":::", "a", "b", ":::+", "1", "2", ":::", "x",
        ]))
        .unwrap();
        assert_eq!(command, os(&["echo", "{}"]));
        assert_eq!(
            groups,
            vec![
                vec![Origin::Args(b(&["a", "b"])), Origin::Args(b(&["1", "2"]))],
                vec![Origin::Args(b(&["x"]))],
            ]
        );
        let (_, groups) = split_command(&os(&["cat", "::::", "f1", "f2"])).unwrap();
        assert_eq!(groups.len(), 2, "each file after :::: is a source");
        assert_eq!(
            split_command(&os(&["echo", ":::+", "a"])),
            Err(SourceError::NothingToLink(":::+".into()))
        );
        assert_eq!(
            split_command(&os(&["echo", "::::"])),
            Err(SourceError::NoFile)
        );
    }

    /// Orders as GNU parallel 20221122 printed them.
    #[test]
    fn combinations_and_links_follow_gnu_parallel() {
        let (_, groups) = split_command(&os(&["e", ":::", "a", "b", ":::", "1", "2"])).unwrap();
        assert_eq!(
            wholes(&records(groups, Columns::default())),
            ["a 1", "a 2", "b 1", "b 2"]
        );
        let (_, groups) =
            split_command(&os(&["e", ":::", "a", "b", "c", ":::+", "1", "2"])).unwrap();
        assert_eq!(wholes(&records(groups, Columns::default())), ["a 1", "b 2"]);
        let (_, groups) = split_command(&os(&["e", ":::", "a", ":::", ":::", "x"])).unwrap();
        assert!(
            records(groups, Columns::default()).is_empty(),
            "an empty source: no jobs"
        );
    }

    #[test]
    fn columns_cut_fields_and_the_whole_is_them_joined_by_spaces() {
        let re = regex::bytes::Regex::new(":").unwrap();
        let r = records(vec![vec![Origin::Args(b(&["a:b:c"]))]], Columns(Some(re)));
        assert_eq!(r[0].fields(), b(&["a", "b", "c"]));
        assert_eq!(r[0].whole, b"a b c".to_vec());
    }

    #[test]
    fn records_end_at_the_delimiter() {
        assert_eq!(split_records(b"x,y;z,w;", b';'), b(&["x,y", "z,w"]));
        assert_eq!(split_records(b"a\0b", 0), b(&["a", "b"]));
        assert_eq!(split_records(b"", b'\n'), Vec::<Vec<u8>>::new());
        assert_eq!(split_records(b"\n", b'\n'), b(&[""]));
        assert_eq!(delimiter("\\0"), Ok(0));
        assert!(delimiter("ab").is_err());
    }
}
