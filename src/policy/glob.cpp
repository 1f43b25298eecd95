// The glob dialects of spec §1.9, compiled once into small NFA programs. Matching simulates the
// program with on-stack state sets: it never allocates, and its work is bounded by pattern length
// times value length whatever the pattern (`*a*a*a*b` cannot backtrack exponentially).
#include "openshell/policy/glob.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
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

using ByteSet = std::array<uint64_t, 4>;

bool contains(const ByteSet& set, unsigned char c) {
  return ((set[c / 64] >> (c % 64)) & 1U) != 0;
}
void insert(ByteSet& set, unsigned char c) {
  set[c / 64] |= uint64_t{1} << (c % 64);
}

// How a pattern is read. The globset flavour (dialects a and b) has `\` escapes, `{a,b}`, `[^x]`,
// and reads malformed parts literally; the Rust glob crate flavour (dialect c) has none of these
// and rejects malformed patterns outright.
struct Syntax {
  int separator;  // byte that `*` and `?` never match; -1 when they match anything (dialect c)
  bool globset;
};

enum class AtomKind : uint8_t { kLiteral, kQuestion, kStars, kClass, kOpen, kComma, kClose };

struct Atom {
  AtomKind kind = AtomKind::kLiteral;
  uint8_t byte = 0;  // kLiteral
  uint16_t arg = 0;  // kStars: run length (capped at 3); kClass: index into the class table
};
using Atoms = std::vector<Atom>;

Atom literal(char c) {
  return Atom{AtomKind::kLiteral, static_cast<uint8_t>(c), 0};
}

enum class Op : uint8_t {
  kByte,     // one byte equal to `byte`
  kOne,      // one byte other than the separator
  kAnyOne,   // any one byte
  kClass,    // one byte of classes[cls]
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

// Programs of at most this many nodes also get a bit-parallel form: their states (nodes plus the
// accepting one) are the bits of one word, so a step is a table lookup and a few shifts.
constexpr size_t kWordNodes = 63;

struct WordProgram {
  std::vector<uint8_t> byte_class;  // 256 entries; bytes that no node tells apart share a class
  std::vector<uint64_t> consumers;  // per class: the states that can consume such a byte
  uint64_t loops = 0;               // states that stay put when they consume
  uint64_t to_next = 0;             // states with an empty move to the next state
  uint64_t splits = 0;              // states with an empty move three states ahead
  uint64_t start = 0;               // everything reachable from state 0 without input
  uint64_t accept = 0;
};

// One alternative after brace expansion. Its literal head and tail are checked with plain string
// compares first; only the middle runs through the NFA (often it is a single `*`).
struct Sequence {
  std::string prefix;
  std::string suffix;
  std::vector<Node> nodes;
  std::optional<WordProgram> word;  // when nodes.size() <= kWordNodes
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
  ByteSet set{};
  for (bool first = true;; first = false) {
    if (j >= p.size()) return kNpos;
    const auto c = static_cast<unsigned char>(p[j]);
    if (c == ']' && !first) break;  // a ']' right after '[' or '[!' is a member
    if (j + 2 < p.size() && p[j + 1] == '-' && p[j + 2] != ']') {
      const auto hi = static_cast<unsigned char>(p[j + 2]);
      if (c > hi && globset) return kNpos;
      for (unsigned v = c; v <= hi; ++v)
        insert(set, static_cast<unsigned char>(v));
      j += 3;
    } else {
      insert(set, c);
      ++j;
    }
  }
  if (negated) {
    for (uint64_t& word : set)
      word = ~word;
  }
  out = set;
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
    if (c == '?') {
      atoms.push_back(Atom{AtomKind::kQuestion, 0, 0});
      ++i;
      continue;
    }
    if (c == '[') {
      ByteSet set{};
      const size_t end = parse_class(p, i, syntax.globset, set);
      if (end != kNpos) {
        classes.push_back(set);
        atoms.push_back(Atom{AtomKind::kClass, 0, static_cast<uint16_t>(classes.size() - 1)});
        i = end;
        continue;
      }
      if (!syntax.globset) return false;
      // globset would refuse this class; the engine reads the '[' literally instead.
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
      // Structural atoms that did not pair up are just their characters.
      const Atom plain = atom.kind == AtomKind::kOpen || atom.kind == AtomKind::kComma ||
                                 atom.kind == AtomKind::kClose
                             ? literal(static_cast<char>(atom.byte))
                             : atom;
      for (Atoms& flat : out)
        flat.push_back(plain);
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

Node byte_node(uint8_t b) {
  return Node{Op::kByte, b, 0};
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
      case AtomKind::kQuestion:
        nodes.push_back(Node{has_separator ? Op::kOne : Op::kAnyOne, 0, 0});
        break;
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
        nodes.push_back(byte_node(static_cast<uint8_t>(component)));
        break;
      }
      case AtomKind::kLiteral:
      case AtomKind::kOpen:
      case AtomKind::kComma:
      case AtomKind::kClose:
        nodes.push_back(byte_node(atom.byte));
        break;
    }
  }
  return true;
}

Sequence make_sequence(std::vector<Node> nodes) {
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
  for (size_t i = tail; i < nodes.size(); ++i)
    seq.suffix.push_back(static_cast<char>(nodes[i].byte));
  seq.nodes.assign(nodes.begin() + static_cast<std::ptrdiff_t>(head),
                   nodes.begin() + static_cast<std::ptrdiff_t>(tail));
  return seq;
}

void set_state(uint64_t* states, size_t i) {
  states[i / 64] |= uint64_t{1} << (i % 64);
}

// Adds every state reachable without input. Edges only go forward, so one ascending pass that
// re-reads each word as it grows is enough.
void close_over_empty(const std::vector<Node>& nodes, uint64_t* states, size_t words) {
  for (size_t w = 0; w < words; ++w) {
    uint64_t seen = 0;
    for (uint64_t pending = states[w]; pending != 0; pending = states[w] & ~seen) {
      const uint64_t low = pending & (~pending + 1);
      seen |= low;
      const size_t i = w * 64 + static_cast<size_t>(std::countr_zero(low));
      if (i >= nodes.size()) break;  // the accepting state is the last one
      if (is_loop(nodes[i].op) || nodes[i].op == Op::kSplit) set_state(states, i + 1);
      if (nodes[i].op == Op::kSplit) set_state(states, i + 3);
    }
  }
}

// Whether state `node` can consume byte `c`.
bool accepts(const Node& node, unsigned char c, int separator,
             const std::vector<ByteSet>& classes) {
  switch (node.op) {
    case Op::kByte:
      return c == node.byte;
    case Op::kOne:
    case Op::kStar:
      return c != separator;
    case Op::kAnyOne:
    case Op::kAnyStar:
      return true;
    case Op::kClass:
      return contains(classes[node.cls], c);
    case Op::kSplit:
      return false;
  }
  return false;
}

uint64_t close_word(const WordProgram& program, uint64_t states) {
  for (;;) {
    const uint64_t grown =
        states | ((states & program.to_next) << 1) | ((states & program.splits) << 3);
    if (grown == states) return states;
    states = grown;
  }
}

WordProgram make_word_program(const std::vector<Node>& nodes, const std::vector<ByteSet>& classes,
                              int separator) {
  WordProgram program;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const uint64_t bit = uint64_t{1} << i;
    if (is_loop(nodes[i].op)) program.loops |= bit;
    if (is_loop(nodes[i].op) || nodes[i].op == Op::kSplit) program.to_next |= bit;
    if (nodes[i].op == Op::kSplit) program.splits |= bit;
  }
  program.byte_class.resize(256);
  for (unsigned b = 0; b < 256; ++b) {
    uint64_t consumers = 0;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (accepts(nodes[i], static_cast<unsigned char>(b), separator, classes)) {
        consumers |= uint64_t{1} << i;
      }
    }
    auto found = std::find(program.consumers.begin(), program.consumers.end(), consumers);
    if (found == program.consumers.end()) {
      program.consumers.push_back(consumers);
      found = program.consumers.end() - 1;
    }
    program.byte_class[b] = static_cast<uint8_t>(found - program.consumers.begin());
  }
  program.accept = uint64_t{1} << nodes.size();
  program.start = close_word(program, 1);
  return program;
}

bool run_word_program(const WordProgram& program, std::string_view value) {
  uint64_t states = program.start;
  for (const char ch : value) {
    const uint64_t live =
        states & program.consumers[program.byte_class[static_cast<unsigned char>(ch)]];
    states = close_word(program, ((live & ~program.loops) << 1) | (live & program.loops));
    if (states == 0) return false;
  }
  return (states & program.accept) != 0;
}

bool run_program(const std::vector<Node>& nodes, const std::vector<ByteSet>& classes, int separator,
                 std::string_view value) {
  const size_t words = nodes.size() / 64 + 1;
  std::array<uint64_t, kStateWords> a{};
  std::array<uint64_t, kStateWords> b{};
  uint64_t* current = a.data();
  uint64_t* next = b.data();
  current[0] = 1;
  close_over_empty(nodes, current, words);
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    std::fill_n(next, words, 0);
    for (size_t w = 0; w < words; ++w) {
      for (uint64_t bits = current[w]; bits != 0; bits &= bits - 1) {
        const size_t i = w * 64 + static_cast<size_t>(std::countr_zero(bits));
        if (i >= nodes.size() || !accepts(nodes[i], c, separator, classes)) continue;
        set_state(next, is_loop(nodes[i].op) ? i : i + 1);
      }
    }
    close_over_empty(nodes, next, words);
    if (std::all_of(next, next + words, [](uint64_t w) { return w == 0; })) return false;
    std::swap(current, next);
  }
  return ((current[nodes.size() / 64] >> (nodes.size() % 64)) & 1U) != 0;
}

// A compiled pattern of any dialect.
struct Matcher {
  enum class Mode : uint8_t { kPrograms, kAll, kText };
  Mode mode = Mode::kPrograms;
  int separator = -1;
  std::string text;  // kText
  std::vector<ByteSet> classes;
  std::vector<Sequence> sequences;

  bool matches_sequence(const Sequence& seq, std::string_view value) const {
    if (value.size() < seq.prefix.size() + seq.suffix.size()) return false;
    if (!value.starts_with(seq.prefix) || !value.ends_with(seq.suffix)) return false;
    const std::string_view middle =
        value.substr(seq.prefix.size(), value.size() - seq.prefix.size() - seq.suffix.size());
    if (seq.nodes.empty()) return middle.empty();
    if (seq.nodes.size() == 1 && seq.nodes[0].op == Op::kAnyStar) return true;
    if (seq.nodes.size() == 1 && seq.nodes[0].op == Op::kStar) {
      return middle.find(static_cast<char>(separator)) == kNpos;
    }
    if (seq.word) return run_word_program(*seq.word, middle);
    return run_program(seq.nodes, classes, separator, middle);
  }

  bool matches(std::string_view value) const {
    switch (mode) {
      case Mode::kAll:
        return true;
      case Mode::kText:
        return value == text;
      case Mode::kPrograms:
        break;
    }
    return std::any_of(sequences.begin(), sequences.end(),
                       [&](const Sequence& seq) { return matches_sequence(seq, value); });
  }
};

// Compiles `pattern` into `out`. Returns false only when the glob crate flavour rejects it.
bool compile_matcher(std::string_view pattern, const Syntax& syntax, Matcher& out) {
  out.separator = syntax.separator;
  if (pattern.size() > kMaxPatternLength) {
    if (!syntax.globset) return false;
    out.mode = Matcher::Mode::kText;
    out.text = std::string(pattern);
    return true;
  }
  Atoms atoms;
  if (!lex(pattern, syntax, syntax.globset, atoms, out.classes)) return false;
  std::vector<Atoms> flats;
  if (!syntax.globset) {
    flats.push_back(std::move(atoms));
  } else if (!expand(atoms, 0, atoms.size(), flats)) {
    // Too many alternatives: read the braces as the characters they are.
    atoms.clear();
    out.classes.clear();
    lex(pattern, syntax, false, atoms, out.classes);
    flats.assign(1, std::move(atoms));
  }
  for (const Atoms& flat : flats) {
    std::vector<Node> nodes;
    if (!build_nodes(flat, syntax, nodes)) return false;
    Sequence seq = make_sequence(std::move(nodes));
    const bool trivial = seq.nodes.empty() || (seq.nodes.size() == 1 && is_loop(seq.nodes[0].op));
    if (!trivial && seq.nodes.size() <= kWordNodes) {
      seq.word = make_word_program(seq.nodes, out.classes, out.separator);
    }
    if (seq.prefix.empty() && seq.suffix.empty() && seq.nodes.size() == 1 &&
        seq.nodes[0].op == Op::kAnyStar) {
      out.mode = Matcher::Mode::kAll;
      out.sequences.clear();
      return true;
    }
    out.sequences.push_back(std::move(seq));
  }
  return true;
}

Syntax syntax_of(GlobDialect dialect) {
  switch (dialect) {
    case GlobDialect::kPath:
      return Syntax{'/', true};
    case GlobDialect::kQuery:
      return Syntax{'.', true};
  }
  return Syntax{'/', true};
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
  compile_matcher(pattern, syntax_of(dialect), glob.program_->matcher);
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
  switch (program_->kind) {
    case Program::Kind::kUnder: {
      const std::string& prefix = program_->prefix;
      return path.starts_with(prefix) &&
             (path.size() == prefix.size() || path[prefix.size()] == '/');
    }
    case Program::Kind::kGlob:
      return program_->matcher.matches(path);
    case Program::Kind::kAny:
    case Program::Kind::kExact:
      break;
  }
  return false;
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
