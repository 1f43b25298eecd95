// The glob dialects of spec §1.9, compiled once into small NFA programs. Matching simulates the
// program with on-stack bit sets: it never allocates, and its work is bounded by pattern length
// times value length whatever the pattern (`*a*a*a*b` cannot backtrack exponentially).
#include "openshell/policy/glob.hpp"

#include <algorithm>
#include <array>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace openshell::policy {
namespace {

// `{a,b}` expansion stops at this many alternatives; a pattern that would need more is read with
// literal braces, so one hostile pattern cannot turn into thousands of programs.
constexpr size_t kMaxAlternatives = 64;
// Longer patterns are compared as plain text (glob_warnings says so). Each pattern byte yields at
// most one program node, so this also sizes the on-stack state sets.
constexpr size_t kMaxPatternLength = 1024;
constexpr size_t kStateWords = (kMaxPatternLength + 1 + 63) / 64;  // states = nodes + accept
constexpr size_t kNpos = std::string_view::npos;

using ByteSet = std::bitset<256>;

// How a pattern is read. The globset flavour (dialects a and b) has `\` escapes, `{a,b}`, `[^x]`,
// and reads malformed parts literally; the Rust glob crate flavour (dialect c) has none of these
// and rejects malformed patterns outright.
struct Syntax {
  int separator;  // byte that `*` and `?` never match; -1 when they match anything (dialect c)
  bool globset;
};

enum class AtomKind : uint8_t { kLiteral, kStars, kClass, kOpen, kComma, kClose };

struct Atom {
  AtomKind kind = AtomKind::kLiteral;
  uint8_t byte = 0;  // kLiteral, and the character of kOpen, kComma, kClose
  uint16_t arg = 0;  // kStars: run length (capped at 3); kClass: index into the class table
};
using Atoms = std::vector<Atom>;

Atom literal(char c) {
  return Atom{AtomKind::kLiteral, static_cast<uint8_t>(c), 0};
}

enum class Op : uint8_t {
  kByte,     // one byte equal to `byte`
  kClass,    // one byte of classes[cls] (`?` is a class too)
  kStar,     // zero or more bytes other than the separator
  kAnyStar,  // zero or more bytes
  // Consumes nothing; enters the next two nodes or skips them. With them it forms the `(.*/)?`
  // a `**/` component compiles to: the skip must exist only before the loop has eaten input.
  kSplit,
};

struct Node {
  Op op = Op::kByte;
  uint8_t byte = 0;
  uint16_t cls = 0;
};

bool is_loop(Op op) {
  return op == Op::kStar || op == Op::kAnyStar;
}

// The middle of a sequence as a bit-parallel NFA: state i means "nodes [0, i) matched" and the
// last state accepts. Bytes that no node tells apart share a class, so one step costs a table
// lookup and a few shifts per 64 states.
struct Program {
  size_t words = 0;                 // state words: nodes / 64 + 1
  size_t accept = 0;                // the accepting state (= number of nodes)
  std::vector<uint8_t> byte_class;  // 256 entries
  std::vector<uint64_t> consumers;  // [class * words + w]: states that can consume such a byte
  std::vector<uint64_t> loops;      // [w]: states that stay put when they consume (and may leave)
  std::vector<uint64_t> splits;     // [w]: states with empty moves one and three states ahead
  std::vector<uint64_t> start;      // [w]: what state 0 reaches without input
};

// One alternative after brace expansion. Its literal head and tail are checked with plain string
// compares first; only the middle, often nothing or a lone `*`, needs more.
struct Sequence {
  enum class Middle : uint8_t { kEmpty, kAnything, kNoSeparator, kProgram };
  std::string prefix;
  std::string suffix;
  Middle middle = Middle::kEmpty;
  Program program;  // kProgram
};

// Parses the bracket expression at p[i] == '['. Returns the index after its ']', or kNpos when the
// expression is malformed (unclosed, or a reversed range, which globset rejects).
size_t parse_class(std::string_view p, size_t i, bool globset, ByteSet& out) {
  size_t j = i + 1;
  bool negated = false;
  if (j < p.size() && (p[j] == '!' || (globset && p[j] == '^'))) {
    negated = true;
    ++j;
  }
  ByteSet set;
  for (bool first = true;; first = false) {
    if (j >= p.size()) return kNpos;
    const auto c = static_cast<unsigned char>(p[j]);
    if (c == ']' && !first) break;  // a ']' right after '[' or '[!' is a member
    if (j + 2 < p.size() && p[j + 1] == '-' && p[j + 2] != ']') {
      const auto hi = static_cast<unsigned char>(p[j + 2]);
      if (c > hi && globset) return kNpos;
      for (unsigned v = c; v <= hi; ++v)
        set.set(v);
      j += 3;
    } else {
      set.set(c);
      ++j;
    }
  }
  out = negated ? ~set : set;
  return j + 1;
}

// Splits a pattern into atoms. Returns false when the glob crate would reject it (dialect c).
bool lex(std::string_view p, const Syntax& syntax, bool braces, Atoms& atoms,
         std::vector<ByteSet>& classes) {
  for (size_t i = 0; i < p.size();) {
    const char c = p[i];
    if (c == '\\' && syntax.globset) {
      // A trailing backslash escapes nothing and stays literal.
      atoms.push_back(literal(i + 1 < p.size() ? p[i + 1] : '\\'));
      i += i + 1 < p.size() ? 2 : 1;
      continue;
    }
    if (c == '*') {
      size_t run = 0;
      while (i + run < p.size() && p[i + run] == '*')
        ++run;
      atoms.push_back(Atom{AtomKind::kStars, 0, static_cast<uint16_t>(std::min<size_t>(run, 3))});
      i += run;
      continue;
    }
    ByteSet set;
    size_t end = kNpos;
    if (c == '?') {
      set.set();
      if (syntax.separator >= 0) set.reset(static_cast<size_t>(syntax.separator));
      end = i + 1;
    } else if (c == '[') {
      end = parse_class(p, i, syntax.globset, set);
      // globset would refuse a malformed class; the engine reads the '[' literally instead.
      if (end == kNpos && !syntax.globset) return false;
    }
    if (end != kNpos) {
      classes.push_back(set);
      atoms.push_back(Atom{AtomKind::kClass, 0, static_cast<uint16_t>(classes.size() - 1)});
      i = end;
      continue;
    }
    if (braces && (c == '{' || c == ',' || c == '}')) {
      const AtomKind kind =
          c == '{' ? AtomKind::kOpen : (c == ',' ? AtomKind::kComma : AtomKind::kClose);
      atoms.push_back(Atom{kind, static_cast<uint8_t>(c), 0});
      ++i;
      continue;
    }
    atoms.push_back(literal(c));
    ++i;
  }
  return true;
}

// Index of the '}' closing the '{' at atoms[open], or kNpos when it is never closed.
size_t matching_close(const Atoms& atoms, size_t open, size_t end) {
  int depth = 0;
  for (size_t i = open; i < end; ++i) {
    if (atoms[i].kind == AtomKind::kOpen) ++depth;
    if (atoms[i].kind == AtomKind::kClose && --depth == 0) return i;
  }
  return kNpos;
}

// Expands the braces of atoms[begin, end) into flat alternatives. Unmatched braces and stray
// commas are literal. Empty alternatives are dropped, as globset does (`x{a,}` matches only
// `xa`; `x{}` matches `x`). Returns false past kMaxAlternatives.
bool expand(const Atoms& atoms, size_t begin, size_t end, std::vector<Atoms>& out) {
  out.assign(1, Atoms{});
  for (size_t i = begin; i < end;) {
    const Atom& atom = atoms[i];
    const size_t close = atom.kind == AtomKind::kOpen ? matching_close(atoms, i, end) : kNpos;
    if (close == kNpos) {
      for (Atoms& flat : out)
        flat.push_back(atom);  // build_nodes reads unpaired braces and commas as characters
      ++i;
      continue;
    }
    std::vector<Atoms> choices;
    int depth = 0;
    for (size_t k = i + 1, start = i + 1; k <= close; ++k) {
      if (k < close && (depth > 0 || atoms[k].kind != AtomKind::kComma)) {
        if (atoms[k].kind == AtomKind::kOpen) ++depth;
        if (atoms[k].kind == AtomKind::kClose) --depth;
        continue;
      }
      std::vector<Atoms> sub;
      if (!expand(atoms, start, k, sub)) return false;
      for (Atoms& flat : sub) {
        if (!flat.empty()) choices.push_back(std::move(flat));
      }
      if (choices.size() > kMaxAlternatives) return false;
      start = k + 1;
    }
    if (choices.empty()) choices.emplace_back();
    if (out.size() * choices.size() > kMaxAlternatives) return false;
    std::vector<Atoms> product;
    product.reserve(out.size() * choices.size());
    for (const Atoms& head : out) {
      for (const Atoms& tail : choices) {
        Atoms joined = head;
        joined.insert(joined.end(), tail.begin(), tail.end());
        product.push_back(std::move(joined));
      }
    }
    out = std::move(product);
    i = close + 1;
  }
  return true;
}

// Turns one flat alternative into program nodes, giving `**` its recursive meaning only as a
// whole path component (spec §1.9a). Returns false when the glob crate would reject it.
bool build_nodes(const Atoms& atoms, const Syntax& syntax, std::vector<Node>& nodes) {
  const bool has_separator = syntax.separator >= 0;
  // The glob crate recognises `**` components around '/', though its `*` crosses '/'.
  const int component = has_separator ? syntax.separator : '/';
  const auto is_component_separator = [&](size_t k) {
    return k < atoms.size() && atoms[k].kind == AtomKind::kLiteral && atoms[k].byte == component;
  };
  const Node one_star{has_separator ? Op::kStar : Op::kAnyStar, 0, 0};
  for (size_t k = 0; k < atoms.size(); ++k) {
    const Atom& atom = atoms[k];
    switch (atom.kind) {
      case AtomKind::kClass:
        nodes.push_back(Node{Op::kClass, 0, atom.arg});
        break;
      case AtomKind::kStars: {
        const bool at_end = k + 1 == atoms.size();
        const bool whole_component =
            (k == 0 || is_component_separator(k - 1)) && (at_end || is_component_separator(k + 1));
        if (atom.arg == 1) {
          nodes.push_back(one_star);
          break;
        }
        if (!syntax.globset && (atom.arg > 2 || !whole_component)) return false;
        if (atom.arg > 2 || !whole_component) {
          nodes.push_back(one_star);  // globset: `**` glued to other text is a plain `*`
          break;
        }
        if (at_end) {
          // `**` alone, or `X/**` (the separator before it is already a node): anything below.
          nodes.push_back(Node{Op::kAnyStar, 0, 0});
          break;
        }
        ++k;  // the component's trailing separator belongs to the `(.*/)?` group
        if (!syntax.globset && k + 1 == atoms.size()) {
          nodes.push_back(Node{Op::kAnyStar, 0, 0});  // glob crate: `X/**/` then nothing
          break;
        }
        nodes.push_back(Node{Op::kSplit, 0, 0});
        nodes.push_back(Node{Op::kAnyStar, 0, 0});
        nodes.push_back(Node{Op::kByte, static_cast<uint8_t>(component), 0});
        break;
      }
      case AtomKind::kLiteral:
      case AtomKind::kOpen:
      case AtomKind::kComma:
      case AtomKind::kClose:
        nodes.push_back(Node{Op::kByte, atom.byte, 0});  // braces that did not pair up, too
        break;
    }
  }
  return true;
}

// Whether node `node` can consume byte `c`.
bool accepts(const Node& node, unsigned char c, int separator,
             const std::vector<ByteSet>& classes) {
  switch (node.op) {
    case Op::kByte:
      return c == node.byte;
    case Op::kStar:
      return c != separator;
    case Op::kAnyStar:
      return true;
    case Op::kClass:
      return classes[node.cls].test(c);
    case Op::kSplit:
      return false;
  }
  return false;
}

// Adds every state reachable without input. Empty moves only go forward, so this settles after
// a pass or two.
void close_states(const Program& program, uint64_t* states) {
  for (bool grew = true; grew;) {
    grew = false;
    uint64_t carry_one = 0;
    uint64_t carry_three = 0;
    for (size_t w = 0; w < program.words; ++w) {
      const uint64_t one = states[w] & (program.loops[w] | program.splits[w]);
      const uint64_t three = states[w] & program.splits[w];
      const uint64_t reached = (one << 1) | carry_one | (three << 3) | carry_three;
      carry_one = one >> 63;
      carry_three = three >> 61;
      if ((reached & ~states[w]) != 0) {
        states[w] |= reached;
        grew = true;
      }
    }
  }
}

Program make_program(const std::vector<Node>& nodes, const std::vector<ByteSet>& classes,
                     int separator) {
  Program program;
  program.words = nodes.size() / 64 + 1;
  program.accept = nodes.size();
  program.loops.assign(program.words, 0);
  program.splits.assign(program.words, 0);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const uint64_t bit = uint64_t{1} << (i % 64);
    if (is_loop(nodes[i].op)) program.loops[i / 64] |= bit;
    if (nodes[i].op == Op::kSplit) program.splits[i / 64] |= bit;
  }
  program.byte_class.resize(256);
  std::vector<uint64_t> row(program.words);
  for (unsigned b = 0; b < 256; ++b) {
    std::fill(row.begin(), row.end(), 0);
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (accepts(nodes[i], static_cast<unsigned char>(b), separator, classes)) {
        row[i / 64] |= uint64_t{1} << (i % 64);
      }
    }
    size_t cls = 0;
    while (
        cls * program.words < program.consumers.size() &&
        !std::equal(row.begin(), row.end(),
                    program.consumers.begin() + static_cast<std::ptrdiff_t>(cls * program.words))) {
      ++cls;
    }
    if (cls * program.words == program.consumers.size()) {
      program.consumers.insert(program.consumers.end(), row.begin(), row.end());
    }
    program.byte_class[b] = static_cast<uint8_t>(cls);
  }
  program.start.assign(program.words, 0);
  program.start[0] = 1;
  close_states(program, program.start.data());
  return program;
}

bool run_program(const Program& program, std::string_view value) {
  std::array<uint64_t, kStateWords> a;  // only the first program.words are ever used
  std::array<uint64_t, kStateWords> b;
  uint64_t* current = a.data();
  uint64_t* next = b.data();
  std::copy(program.start.begin(), program.start.end(), current);
  for (const char ch : value) {
    const uint64_t* consumers =
        &program.consumers[program.byte_class[static_cast<unsigned char>(ch)] * program.words];
    uint64_t carry = 0;
    uint64_t alive = 0;
    for (size_t w = 0; w < program.words; ++w) {
      const uint64_t live = current[w] & consumers[w];
      const uint64_t moving = live & ~program.loops[w];
      next[w] = (moving << 1) | carry | (live & program.loops[w]);
      carry = moving >> 63;
    }
    close_states(program, next);
    for (size_t w = 0; w < program.words; ++w)
      alive |= next[w];
    if (alive == 0) return false;
    std::swap(current, next);
  }
  return ((current[program.accept / 64] >> (program.accept % 64)) & 1U) != 0;
}

Sequence make_sequence(const std::vector<Node>& nodes, const std::vector<ByteSet>& classes,
                       int separator) {
  Sequence seq;
  size_t head = 0;
  while (head < nodes.size() && nodes[head].op == Op::kByte) {
    seq.prefix.push_back(static_cast<char>(nodes[head].byte));
    ++head;
  }
  // The separator closing a skippable `(.*/)?` group is optional, so it cannot join the tail.
  size_t tail = nodes.size();
  while (tail > head && nodes[tail - 1].op == Op::kByte &&
         !(tail >= 3 && nodes[tail - 3].op == Op::kSplit)) {
    --tail;
  }
  for (size_t i = tail; i < nodes.size(); ++i) {
    seq.suffix.push_back(static_cast<char>(nodes[i].byte));
  }
  const std::vector<Node> middle(nodes.begin() + static_cast<std::ptrdiff_t>(head),
                                 nodes.begin() + static_cast<std::ptrdiff_t>(tail));
  if (middle.empty()) {
    seq.middle = Sequence::Middle::kEmpty;
  } else if (middle.size() == 1 && middle[0].op == Op::kAnyStar) {
    seq.middle = Sequence::Middle::kAnything;
  } else if (middle.size() == 1 && middle[0].op == Op::kStar) {
    seq.middle = Sequence::Middle::kNoSeparator;
  } else {
    seq.middle = Sequence::Middle::kProgram;
    seq.program = make_program(middle, classes, separator);
  }
  return seq;
}

// A compiled pattern of any dialect.
struct Matcher {
  enum class Mode : uint8_t { kSequences, kAll, kText };
  Mode mode = Mode::kSequences;
  char separator = 0;  // for Middle::kNoSeparator, which only the globset flavour produces
  std::string text;    // kText
  std::vector<Sequence> sequences;

  bool matches_sequence(const Sequence& seq, std::string_view value) const {
    if (value.size() < seq.prefix.size() + seq.suffix.size()) return false;
    if (!value.starts_with(seq.prefix) || !value.ends_with(seq.suffix)) return false;
    const std::string_view middle =
        value.substr(seq.prefix.size(), value.size() - seq.prefix.size() - seq.suffix.size());
    if (seq.middle == Sequence::Middle::kEmpty) return middle.empty();
    if (seq.middle == Sequence::Middle::kAnything) return true;
    if (seq.middle == Sequence::Middle::kNoSeparator) return middle.find(separator) == kNpos;
    return run_program(seq.program, middle);
  }

  bool matches(std::string_view value) const {
    if (mode != Mode::kSequences) return mode == Mode::kAll || value == text;
    return std::any_of(sequences.begin(), sequences.end(),
                       [&](const Sequence& seq) { return matches_sequence(seq, value); });
  }
};

// Compiles `pattern` into `out`. Returns false only when the glob crate flavour rejects it.
bool compile_matcher(std::string_view pattern, const Syntax& syntax, Matcher& out) {
  out.separator = static_cast<char>(syntax.separator);
  if (pattern.size() > kMaxPatternLength) {
    if (!syntax.globset) return false;
    out.mode = Matcher::Mode::kText;
    out.text = std::string(pattern);
    return true;
  }
  Atoms atoms;
  std::vector<ByteSet> classes;
  if (!lex(pattern, syntax, syntax.globset, atoms, classes)) return false;
  std::vector<Atoms> flats;
  if (!syntax.globset) {
    flats.push_back(std::move(atoms));
  } else if (!expand(atoms, 0, atoms.size(), flats)) {
    // Too many alternatives: read the braces as the characters they are.
    atoms.clear();
    classes.clear();
    lex(pattern, syntax, false, atoms, classes);
    flats.assign(1, std::move(atoms));
  }
  for (const Atoms& flat : flats) {
    std::vector<Node> nodes;
    if (!build_nodes(flat, syntax, nodes)) return false;
    Sequence seq = make_sequence(nodes, classes, syntax.separator);
    if (seq.prefix.empty() && seq.suffix.empty() && seq.middle == Sequence::Middle::kAnything) {
      out.mode = Matcher::Mode::kAll;
      out.sequences.clear();
      return true;
    }
    out.sequences.push_back(std::move(seq));
  }
  return true;
}

// The reference's check_glob_syntax: counts brackets and braces, escapes notwithstanding.
std::string balance_warning(std::string_view pattern, char open, char close) {
  const std::string quoted = "glob pattern '" + std::string(pattern) + "' has ";
  int depth = 0;
  for (const char c : pattern) {
    if (c == open) ++depth;
    if (c == close && --depth < 0) return quoted + "unmatched '" + close + "'";
  }
  return depth > 0 ? quoted + "unclosed '" + open + "'" : std::string();
}

}  // namespace

struct Glob::Program {
  Matcher matcher;
};

Glob Glob::compile(std::string_view pattern, GlobDialect dialect) {
  Glob glob;
  glob.pattern_ = std::string(pattern);
  glob.program_ = std::make_unique<Program>();
  const Syntax syntax{dialect == GlobDialect::kPath ? '/' : '.', true};
  compile_matcher(pattern, syntax, glob.program_->matcher);
  return glob;
}

bool Glob::matches(std::string_view value) const {
  return program_ != nullptr && program_->matcher.matches(value);
}

Glob::Glob(Glob&&) noexcept = default;
Glob& Glob::operator=(Glob&&) noexcept = default;
Glob::~Glob() = default;

Glob::Glob(const Glob& other)
    : pattern_(other.pattern_),
      program_(other.program_ ? std::make_unique<Program>(*other.program_) : nullptr) {}

Glob& Glob::operator=(const Glob& other) {
  if (this != &other) *this = Glob(other);
  return *this;
}

std::vector<std::string> glob_warnings(std::string_view pattern) {
  std::vector<std::string> warnings;
  std::string warning = balance_warning(pattern, '[', ']');
  if (warning.empty()) warning = balance_warning(pattern, '{', '}');
  if (!warning.empty()) warnings.push_back(std::move(warning));
  if (pattern.size() > kMaxPatternLength) {
    warnings.push_back("glob pattern is longer than " + std::to_string(kMaxPatternLength) +
                       " bytes and is matched as plain text");
  }
  return warnings;
}

struct EndpointPathSelector::Program {
  enum class Kind : uint8_t { kAny, kUnder, kGlob, kExact };
  Kind kind = Kind::kExact;
  std::string prefix;  // kUnder: the X of "X/**", taken literally as the reference does
  Matcher matcher;     // kGlob
};

EndpointPathSelector EndpointPathSelector::compile(std::string_view selector) {
  EndpointPathSelector out;
  out.selector_ = std::string(selector);
  // Characters, not bytes: skip UTF-8 continuation bytes.
  out.specificity_ = static_cast<int>(std::count_if(selector.begin(), selector.end(), [](char c) {
    return c != '*' && (static_cast<unsigned char>(c) & 0xC0U) != 0x80U;
  }));
  out.program_ = std::make_unique<Program>();
  Program& program = *out.program_;
  if (selector.empty() || selector == "**" || selector == "/**") {
    program.kind = Program::Kind::kAny;
  } else if (selector.ends_with("/**")) {
    program.kind = Program::Kind::kUnder;
    program.prefix = std::string(selector.substr(0, selector.size() - 3));
  } else if (compile_matcher(selector, Syntax{-1, false}, program.matcher)) {
    program.kind = Program::Kind::kGlob;
  } else {
    program.kind = Program::Kind::kExact;
  }
  return out;
}

bool EndpointPathSelector::matches(std::string_view path) const {
  if (program_ == nullptr) return false;
  if (program_->kind == Program::Kind::kAny || path == selector_) return true;
  if (program_->kind == Program::Kind::kUnder) {
    const std::string& prefix = program_->prefix;
    return path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/');
  }
  return program_->kind == Program::Kind::kGlob && program_->matcher.matches(path);
}

EndpointPathSelector::EndpointPathSelector(EndpointPathSelector&&) noexcept = default;
EndpointPathSelector& EndpointPathSelector::operator=(EndpointPathSelector&&) noexcept = default;
EndpointPathSelector::~EndpointPathSelector() = default;

EndpointPathSelector::EndpointPathSelector(const EndpointPathSelector& other)
    : selector_(other.selector_),
      specificity_(other.specificity_),
      program_(other.program_ ? std::make_unique<Program>(*other.program_) : nullptr) {}

EndpointPathSelector& EndpointPathSelector::operator=(const EndpointPathSelector& other) {
  if (this != &other) *this = EndpointPathSelector(other);
  return *this;
}

}  // namespace openshell::policy
