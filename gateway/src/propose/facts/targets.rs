//! Where programs with an option grammar of their own write: `cp -t DIR`, `sed -i`,
//! `tar -x -C DIR`, `unzip -d DIR`, `patch FILE`, `ln -s TARGET LINK`, `crontab FILE`.

/// What one command writes and reads, as its arguments say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Files and directories it writes, creates, edits or deletes.
    pub changed: Vec<String>,
    /// Files it reads.
    pub read: Vec<String>,
    /// It writes into its working directory (`tar -x`, `unzip`, `patch` without a file).
    pub in_cwd: bool,
    /// It may write anywhere (`tar -P`: members' absolute names kept).
    pub anywhere: bool,
}

/// Programs whose last operand (or `-t DIR`) is what they write.
const WRITES_LAST: &[&str] = &["cp", "mv", "install", "ln", "rsync", "scp"];

/// Where `name` run with `args` writes; `None` for a program not read here.
pub fn of(name: &str, args: &[String]) -> Option<Targets> {
    match name {
        _ if WRITES_LAST.contains(&name) => Some(copy(name, args)),
        "sed" => Some(sed(args)),
        "tar" => Some(tar(args)),
        "unzip" => Some(unzip(args)),
        "patch" => Some(patch(args)),
        "crontab" | "at" | "batch" => Some(schedule(name, args)),
        _ => None,
    }
}

/// An argument list read with `value_options` taking a value: the operands, and each
/// option's value with the option (`("-t", "/etc")`), long ones also as `--name=value`.
struct Parsed<'a> {
    operands: Vec<&'a str>,
    values: Vec<(&'a str, &'a str)>,
    flags: Vec<&'a str>,
}

impl<'a> Parsed<'a> {
    fn new(args: &'a [String], value_options: &[&str]) -> Self {
        let mut parsed = Parsed {
            operands: Vec::new(),
            values: Vec::new(),
            flags: Vec::new(),
        };
        let mut words = args.iter().map(String::as_str);
        while let Some(arg) = words.next() {
            if arg == "--" {
                parsed.operands.extend(words.by_ref());
                break;
            }
            if !arg.starts_with('-') || arg == "-" {
                parsed.operands.push(arg);
                continue;
            }
            if let Some((option, value)) = arg.split_once('=').filter(|_| arg.starts_with("--")) {
                parsed.values.push((option, value));
                continue;
            }
            // A short option with its value attached (`-t/etc`, `-C/`, `-p1`).
            let short = (arg.len() > 2 && !arg.starts_with("--") && arg.is_char_boundary(2))
                .then(|| arg.split_at(2));
            if let Some((option, value)) = short.filter(|(o, _)| value_options.contains(o)) {
                parsed.values.push((option, value));
            } else if value_options.contains(&arg) {
                parsed.values.push((arg, words.next().unwrap_or("")));
            } else {
                parsed.flags.push(arg);
            }
        }
        parsed
    }

    /// The values given to any of `options` (a long one also by a unique prefix of 3+ letters).
    fn values_of(&self, options: &[&str]) -> Vec<&'a str> {
        self.values
            .iter()
            .filter(|(option, _)| {
                options.iter().any(|o| {
                    o == option
                        || (option.len() >= 5 && o.starts_with("--") && o.starts_with(option))
                })
            })
            .map(|(_, value)| *value)
            .collect()
    }

    /// A flag among `flags` is given, alone or in a cluster of short ones.
    fn has(&self, letters: &[char], long: &[&str]) -> bool {
        self.flags.iter().any(|f| {
            long.iter()
                .any(|l| *f == *l || (f.len() >= 5 && l.starts_with(f)))
                || (!f.starts_with("--") && f.contains(letters))
        })
    }
}

/// `cp`, `mv`, `install`, `ln`, `rsync`, `scp`: the last operand, or `-t DIR`, is written;
/// `mv` changes its sources; `install -d` creates every operand; a link (`ln`) makes its
/// target writable through it, so what it points to counts as changed.
fn copy(name: &str, args: &[String]) -> Targets {
    let parsed = Parsed::new(
        args,
        &[
            "-t",
            "--target-directory",
            "-S",
            "--suffix",
            "-m",
            "--mode",
            "-o",
            "--owner",
            "-g",
            "--group",
        ],
    );
    let mut targets = Targets::default();
    let target_dirs = parsed.values_of(&["-t", "--target-directory"]);
    if name == "install" && parsed.has(&['d'], &["--directory"]) {
        targets.changed = parsed.operands.iter().map(|o| o.to_string()).collect();
        return targets;
    }
    let (sources, dest): (&[&str], Option<&str>) = match target_dirs.last() {
        Some(dir) => (&parsed.operands, Some(dir)),
        None if parsed.operands.len() >= 2 => {
            let (last, sources) = parsed.operands.split_last().unwrap_or((&"", &[]));
            (sources, Some(last))
        }
        None => (&[], None),
    };
    let linked = name == "ln";
    for source in sources {
        if name == "mv" || linked {
            targets.changed.push(source.to_string());
        } else {
            targets.read.push(source.to_string());
        }
        // A relative symbolic link's target is read from the link's directory.
        if linked
            && !source.starts_with('/')
            && let Some(dest) = dest
        {
            let dir = if target_dirs.is_empty() && sources.len() == 1 && !dest.ends_with('/') {
                dest.rsplit_once('/').map_or(".", |(dir, _)| dir)
            } else {
                dest
            };
            targets.changed.push(format!("{dir}/{source}"));
        }
    }
    targets.changed.extend(dest.map(str::to_owned));
    targets
}

/// `sed`: with `-i` (`--in-place`, `-i.bak`, in a cluster) the files it edits; otherwise the
/// files it reads. The script (the first operand without `-e`/`-f`) is no file.
fn sed(args: &[String]) -> Targets {
    let mut in_place = false;
    let mut script_given = false;
    let mut files = Vec::new();
    let mut words = args.iter();
    let mut options_done = false;
    while let Some(arg) = words.next() {
        if options_done || !arg.starts_with('-') || arg == "-" {
            files.push(arg.to_string());
            continue;
        }
        if arg == "--" {
            options_done = true;
        } else if let Some(long) = arg.strip_prefix("--") {
            let name = long.split_once('=').map_or(long, |(n, _)| n);
            in_place |= !name.is_empty() && "in-place".starts_with(name);
            let value =
                name.len() >= 2 && ["expression", "file"].iter().any(|o| o.starts_with(name));
            script_given |= value;
            if value && !long.contains('=') {
                words.next();
            }
        } else {
            // A cluster: `-i` takes the rest as its suffix; `-e`, `-f`, `-l` take a value.
            for (at, letter) in arg.char_indices().skip(1) {
                match letter {
                    'i' => {
                        in_place = true;
                        break;
                    }
                    'e' | 'f' | 'l' => {
                        script_given |= letter != 'l';
                        if at + 1 == arg.len() {
                            words.next();
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    if !script_given && !files.is_empty() {
        files.remove(0);
    }
    if in_place {
        Targets {
            changed: files,
            ..Targets::default()
        }
    } else {
        Targets {
            read: files,
            ..Targets::default()
        }
    }
}

/// `tar`: extracting writes into `-C DIR` (else its working directory; anywhere with `-P`);
/// creating, appending or updating writes the archive (`-f FILE`).
fn tar(args: &[String]) -> Targets {
    // Short options that take a value, in the order their letters come.
    const VALUE_LETTERS: &str = "bCfFgHIKLNTVX";
    let mut letters = String::new();
    let mut values: Vec<(char, &str)> = Vec::new();
    let mut long: Vec<(&str, Option<&str>)> = Vec::new();
    let mut words = args.iter().map(String::as_str);
    // The first word may be an old-style cluster without a dash (`tar xzf a.tgz -C /`).
    let mut first = true;
    while let Some(arg) = words.next() {
        let cluster = if let Some(rest) = arg.strip_prefix("--") {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            let takes = ["directory", "file"]
                .iter()
                .any(|o| name.len() >= 3 && o.starts_with(name));
            let value = value.or_else(|| if takes { words.next() } else { None });
            long.push((name, value));
            None
        } else if let Some(cluster) = arg.strip_prefix('-') {
            Some((cluster, true))
        } else if first {
            Some((arg, false))
        } else {
            None
        };
        first = false;
        let Some((cluster, dashed)) = cluster else {
            continue;
        };
        for (at, letter) in cluster.char_indices() {
            letters.push(letter);
            if VALUE_LETTERS.contains(letter) {
                let rest = &cluster[at + letter.len_utf8()..];
                if dashed && !rest.is_empty() {
                    values.push((letter, rest));
                    break;
                }
                values.push((letter, words.next().unwrap_or("")));
            }
        }
    }
    let long_is = |names: &[&str]| {
        long.iter()
            .any(|(n, _)| n.len() >= 3 && names.iter().any(|o| o.starts_with(n)))
    };
    let long_value = |name: &str| {
        long.iter()
            .filter(|(n, _)| n.len() >= 3 && name.starts_with(n))
            .filter_map(|(_, v)| *v)
            .collect::<Vec<_>>()
    };
    let short_value = |letter: char| {
        values
            .iter()
            .filter(move |(l, _)| *l == letter)
            .map(|(_, v)| *v)
    };
    let extract = letters.contains('x') || long_is(&["extract", "get"]);
    let writes_archive = letters.contains(['c', 'r', 'u', 'A'])
        || long_is(&["create", "append", "update", "concatenate", "catenate"]);
    let archives: Vec<&str> = short_value('f').chain(long_value("file")).collect();
    let mut targets = Targets::default();
    if extract {
        let dirs: Vec<&str> = short_value('C').chain(long_value("directory")).collect();
        match dirs.last() {
            Some(dir) => targets.changed.push(dir.to_string()),
            None => targets.in_cwd = true,
        }
        targets.anywhere = letters.contains('P') || long_is(&["absolute-names"]);
        targets.read.extend(archives.iter().map(|a| a.to_string()));
    } else if writes_archive {
        targets
            .changed
            .extend(archives.iter().map(|a| a.to_string()));
    } else {
        targets.read.extend(archives.iter().map(|a| a.to_string()));
    }
    targets
}

/// `unzip ARCHIVE [-d DIR]`: writes into DIR, else its working directory; anywhere with
/// `-:` (`../` kept in members' names).
fn unzip(args: &[String]) -> Targets {
    let parsed = Parsed::new(args, &["-d", "-x", "-P"]);
    let mut targets = Targets::default();
    let list_only = parsed.has(&['l', 'v', 't', 'p', 'Z'], &[]);
    match parsed.values_of(&["-d"]).last() {
        Some(dir) => targets.changed.push(dir.to_string()),
        None => targets.in_cwd = !list_only,
    }
    targets.anywhere = parsed.has(&[':'], &[]);
    targets
        .read
        .extend(parsed.operands.first().map(|a| a.to_string()));
    targets
}

/// `patch [ORIGINAL [PATCHFILE]]`: writes ORIGINAL, `-o FILE`, `-r FILE`; without ORIGINAL,
/// the files the patch names, inside `-d DIR` or its working directory (GNU patch refuses
/// absolute names and `..` in the patch).
fn patch(args: &[String]) -> Targets {
    let parsed = Parsed::new(
        args,
        &[
            "-d",
            "--directory",
            "-i",
            "--input",
            "-o",
            "--output",
            "-r",
            "--reject-file",
            "-p",
            "--strip",
            "-B",
            "--prefix",
            "-Y",
            "--basename-prefix",
            "-z",
            "--suffix",
            "-D",
            "--ifdef",
            "-F",
            "--fuzz",
            "-V",
            "--version-control",
            "-g",
            "--get",
        ],
    );
    let mut targets = Targets::default();
    let dir = parsed.values_of(&["-d", "--directory"]).last().copied();
    let within = |path: &str| match dir {
        Some(dir) if !path.starts_with('/') => format!("{dir}/{path}"),
        _ => path.to_owned(),
    };
    match parsed.operands.first() {
        Some(original) => targets.changed.push(within(original)),
        None => match dir {
            Some(dir) => targets.changed.push(dir.to_owned()),
            None => targets.in_cwd = true,
        },
    }
    for written in parsed.values_of(&["-o", "--output", "-r", "--reject-file"]) {
        targets.changed.push(within(written));
    }
    for input in parsed.values_of(&["-i", "--input"]) {
        targets.read.push(within(input));
    }
    targets
        .read
        .extend(parsed.operands.get(1).map(|p| within(p)));
    targets
}

/// `crontab FILE` (or `-`, `-r`, `-e`), `at`, `batch`: they install commands in the system's
/// spool, outside any workspace; `crontab -l` only lists.
fn schedule(name: &str, args: &[String]) -> Targets {
    let parsed = Parsed::new(args, &["-u", "-f", "-q", "-t"]);
    let mut targets = Targets::default();
    let lists = parsed.has(&['l'], &[]) && name == "crontab";
    if !lists {
        targets.changed.push(format!("/var/spool/cron/{name}"));
    }
    let files = if name == "crontab" {
        parsed
            .operands
            .iter()
            .copied()
            .filter(|f| *f != "-")
            .collect()
    } else {
        parsed.values_of(&["-f"])
    };
    targets.read.extend(files.iter().map(|f| f.to_string()));
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(name: &str, line: &str) -> Targets {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        of(name, &args).expect(name)
    }

    #[test]
    fn copies_write_their_target_directory_or_last_operand() {
        assert_eq!(targets("cp", "-t /etc x").changed, vec!["/etc"]);
        assert_eq!(
            targets("cp", "--target-directory=/etc x y").changed,
            vec!["/etc"]
        );
        assert_eq!(targets("mv", "-t/etc x").changed, vec!["x", "/etc"]);
        assert_eq!(targets("cp", "-a x y /srv/").changed, vec!["/srv/"]);
        assert_eq!(targets("cp", "-a x y /srv/").read, vec!["x", "y"]);
        assert_eq!(
            targets("install", "-d /opt/a b").changed,
            vec!["/opt/a", "b"]
        );
        assert_eq!(
            targets("install", "-m 755 x /usr/bin/").changed,
            vec!["/usr/bin/"]
        );
        assert_eq!(
            targets("ln", "-s ../../etc sub/lnk").changed,
            vec!["../../etc", "sub/../../etc", "sub/lnk"]
        );
        assert_eq!(targets("cp", "one").changed, Vec::<String>::new());
    }

    #[test]
    fn sed_in_place_edits_its_files_and_skips_its_script() {
        assert_eq!(
            targets("sed", "-i s/a/b/ /etc/hosts").changed,
            vec!["/etc/hosts"]
        );
        assert_eq!(targets("sed", "-i.bak /x/d f").changed, vec!["f"]);
        assert_eq!(targets("sed", "-ni /x/p f").changed, vec!["f"]);
        assert_eq!(
            targets("sed", "--in-place -e /x/d a b").changed,
            vec!["a", "b"]
        );
        assert_eq!(targets("sed", "--in -e s/a/b/ a").changed, vec!["a"]);
        assert_eq!(
            targets("sed", "-E -i -e s/a/b/ -e /c/d f").changed,
            vec!["f"]
        );
        let read = targets("sed", "-n /etc/p /etc/hosts");
        assert!(read.changed.is_empty());
        assert_eq!(read.read, vec!["/etc/hosts"]);
    }

    #[test]
    fn tar_extracts_into_its_directory_and_creates_its_archive() {
        assert_eq!(targets("tar", "-xf a.tar -C /").changed, vec!["/"]);
        assert_eq!(targets("tar", "xzf a.tgz -C /etc").changed, vec!["/etc"]);
        assert_eq!(targets("tar", "xzfC a.tgz /opt").changed, vec!["/opt"]);
        assert!(targets("tar", "-xzfC a.tgz /opt").in_cwd);
        assert_eq!(targets("tar", "-C/usr -xf a.tar").changed, vec!["/usr"]);
        assert_eq!(
            targets("tar", "--extract --file=a.tar --directory /srv").changed,
            vec!["/srv"]
        );
        assert!(targets("tar", "-xf a.tar").in_cwd);
        assert!(targets("tar", "-xPf a.tar").anywhere);
        assert_eq!(
            targets("tar", "-czf /etc/x.tgz .").changed,
            vec!["/etc/x.tgz"]
        );
        assert!(targets("tar", "-tf /etc/x.tgz").changed.is_empty());
    }

    #[test]
    fn unzip_patch_and_schedulers_name_what_they_write() {
        assert_eq!(targets("unzip", "x.zip -d /etc").changed, vec!["/etc"]);
        assert_eq!(targets("unzip", "-o -d/etc x.zip").changed, vec!["/etc"]);
        assert!(targets("unzip", "x.zip").in_cwd);
        assert!(!targets("unzip", "-l x.zip").in_cwd);
        assert_eq!(targets("patch", "/etc/passwd").changed, vec!["/etc/passwd"]);
        assert_eq!(targets("patch", "-p1 -d /srv").changed, vec!["/srv"]);
        assert_eq!(
            targets("patch", "-d /srv a.c p.diff").changed,
            vec!["/srv/a.c"]
        );
        assert!(targets("patch", "-p1 -i fix.diff").in_cwd);
        assert_eq!(
            targets("crontab", "x").changed,
            vec!["/var/spool/cron/crontab"]
        );
        assert!(targets("crontab", "-l").changed.is_empty());
        assert_eq!(targets("at", "now -f job").read, vec!["job"]);
    }
}
