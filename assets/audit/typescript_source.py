"""An app's TypeScript/JavaScript source, parsed with tree-sitter, and the string values an expression can hold.

The bound is static and never guessed: a value is a string literal with the place it is spelled
(`path:line`); whatever the code could hold beyond literals is an `Unbounded`, with its place and
why. Identifiers are followed to their declarations, across imports; types (aliases, interfaces,
`Partial<T>['k']`, `typeof X[number]`) bound values; a parameter that its type does not bound is
bounded by the arguments at the call sites of its function, found by name across the tree.
"""

from __future__ import annotations

import os
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import tree_sitter as ts
import tree_sitter_typescript as tst

# .js files may hold JSX: the TSX grammar parses both.
_GRAMMARS = {".ts": tst.language_typescript(), ".tsx": tst.language_tsx(), ".js": tst.language_tsx(),
             ".jsx": tst.language_tsx(), ".mjs": tst.language_tsx()}
_PARSERS = {suffix: ts.Parser(ts.Language(grammar)) for suffix, grammar in _GRAMMARS.items()}
SKIPPED_DIRS = {"node_modules", "dist", "build", "coverage"}  # and every hidden folder (.next, .git)
_CALLS = "(call_expression function: [(identifier) @name (member_expression property: (property_identifier) @name)]) @call"
_FUNCTIONS = {"function_declaration", "function_expression", "arrow_function", "method_definition",
              "generator_function_declaration", "generator_function"}
_SCOPES = {"program", "statement_block", "switch_case"}
_TRANSPARENT = {"parenthesized_expression", "non_null_expression", "await_expression", "satisfies_expression"}
_SAME_ELEMENTS = {"filter", "slice", "reverse", "sort", "toSorted", "concat"}  # array methods that keep elements
_MAPPING = {"map", "flatMap"}
_TYPE_WRAPPERS = {"Partial", "Required", "Readonly", "NonNullable"}
_MAX_DEPTH = 40


class SourceError(ValueError):
    """The source folder cannot be read as an app; the message says which and why."""


@dataclass(frozen=True)
class Located:
    """A string value the code writes, and where it is spelled."""

    value: str
    at: str


@dataclass(frozen=True)
class Unbounded:
    """Something the code may hold that no literal bounds: what, where, and why."""

    expression: str
    at: str
    reason: str

    def member(self, name: str) -> Unbounded:
        return Unbounded(f"{self.expression}.{name}", self.at, self.reason)


@dataclass(eq=False)
class Shape:
    """An object: each property's items resolved on demand (types may be recursive)."""

    props: dict[str, Callable[[], list]]
    exact: bool = True  # False: properties not listed may exist
    opaque: list[Unbounded] = field(default_factory=list)  # parts it cannot see into (a spread of the unknown)
    at: str = ""  # where it is written or declared


Item = Located | Unbounded | Shape


class SourceFile:
    def __init__(self, root: Path, path: Path):
        self.path = path
        self.rel = path.relative_to(root).as_posix()
        self.tree = _PARSERS[path.suffix].parse(path.read_bytes())

    def at(self, node: ts.Node) -> str:
        return f"{self.rel}:{node.start_point.row + 1}"

    @cached_property
    def exports(self) -> dict[str, list[ts.Node]]:
        """Top-level `export ... from` statements and export clauses, by exported name ('*' for `export *`)."""
        found = defaultdict(list)
        for statement in self.tree.root_node.named_children:
            if statement.type != "export_statement":
                continue
            clause = next((c for c in statement.named_children if c.type == "export_clause"), None)
            if clause is None and statement.child_by_field_name("source") is not None:
                found["*"].append(statement)
            for spec in clause.named_children if clause else ():
                alias = spec.child_by_field_name("alias") or spec.child_by_field_name("name")
                found[text(alias)].append(spec)
        return found


def text(node: ts.Node) -> str:
    return node.text.decode("utf-8", "replace")


def string_value(node: ts.Node) -> str:
    """The content of a string literal or a template literal without substitutions."""
    return "".join(text(c) for c in node.named_children if c.type in ("string_fragment", "escape_sequence"))


def _brief(node: ts.Node) -> str:
    words = " ".join(text(node).split())
    return words if len(words) <= 80 else words[:77] + "..."


class SourceTree:
    """Every source file under a folder, parsed once; the lookups the resolver needs, built on first use."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"--source {root}: not a directory")
        self.files = {}
        self._modules: dict[tuple[str, str], SourceFile | None] = {}
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
            for name in sorted(names):
                path = Path(folder) / name
                if path.suffix in _PARSERS:
                    try:
                        source = SourceFile(self.root, path)
                    except OSError as exc:
                        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None
                    self.files[source.rel] = source
        if not self.files:
            raise SourceError(f"--source {root}: no {', '.join(_PARSERS)} files in it")

    def query(self, pattern: str) -> Iterator[tuple[SourceFile, dict[str, list[ts.Node]]]]:
        compiled = {}
        for source in self.files.values():
            language = source.tree.language
            if language not in compiled:
                compiled[language] = ts.Query(language, pattern)
            for _, captures in ts.QueryCursor(compiled[language]).matches(source.tree.root_node):
                yield source, captures

    @cached_property
    def calls_by_name(self) -> dict[str, list[tuple[SourceFile, ts.Node]]]:
        """Every call `f(...)` or `x.f(...)` in the tree, by the called name."""
        calls = defaultdict(list)
        for source, captures in self.query(_CALLS):
            calls[text(captures["name"][0])].append((source, captures["call"][0]))
        return calls

    def module(self, importer: SourceFile, spec: str) -> SourceFile | None:
        """The file an import names: relative, or `@/` and `~/` for the `src/` beside the nearest tsconfig.json
        (Next.js), with or without extension. Packages are outside the tree: None."""
        key = (importer.rel, spec)
        if key not in self._modules:
            self._modules[key] = self._find_module(importer.rel, spec)
        return self._modules[key]

    def _find_module(self, importer: str, spec: str) -> SourceFile | None:
        folder = posixpath.dirname(importer)
        if spec.startswith("."):
            bases = [posixpath.normpath(posixpath.join(folder, spec))]
        elif spec.startswith(("@/", "~/")):
            base = self._project(folder)
            bases = [posixpath.join(base, "src", spec[2:]), posixpath.join(base, spec[2:])]
        else:
            return None
        for base in bases:
            stem = posixpath.splitext(base)[0] if base.endswith((".js", ".mjs", ".jsx")) else base
            for candidate in [base, *(stem + s for s in _PARSERS), *(f"{stem}/index{s}" for s in _PARSERS)]:
                if candidate in self.files:
                    return self.files[candidate]
        return None

    def _project(self, folder: str) -> str:
        """The nearest folder at or above `folder` holding a tsconfig.json (else the root), relative to the root."""
        while folder and not (self.root / folder / "tsconfig.json").is_file():
            folder = posixpath.dirname(folder)
        return folder


@dataclass(frozen=True)
class Binding:
    """Where a name is declared: `kind` is var, param, function, class, type, interface, enum or import."""

    kind: str
    node: ts.Node  # the declarator, parameter, declaration or import specifier
    name_node: ts.Node  # the identifier itself (inside a destructuring pattern, maybe)
    file: SourceFile


_VALUE_KINDS = {"var", "param", "function", "class", "enum", "import"}
_TYPE_KINDS = {"type", "interface", "enum", "class", "import"}


def _declared(statement: ts.Node) -> Iterator[tuple[str, str, ts.Node, ts.Node]]:
    """(name, kind, declaration, name node) for each name a statement declares."""
    node = statement.child_by_field_name("declaration") if statement.type == "export_statement" else statement
    if node is None:
        return
    kind = {"function_declaration": "function", "generator_function_declaration": "function",
            "class_declaration": "class", "abstract_class_declaration": "class", "type_alias_declaration": "type",
            "interface_declaration": "interface", "enum_declaration": "enum"}.get(node.type)
    if kind:
        name = node.child_by_field_name("name")
        yield text(name), kind, node, name
    elif node.type in ("lexical_declaration", "variable_declaration"):
        for declarator in node.named_children:
            if declarator.type == "variable_declarator":
                for ident in _pattern_names(declarator.child_by_field_name("name")):
                    yield text(ident), "var", declarator, ident
    elif node.type == "import_statement":
        clause = next((c for c in node.named_children if c.type == "import_clause"), None)
        for part in clause.named_children if clause else ():
            if part.type == "named_imports":
                for spec in part.named_children:
                    local = spec.child_by_field_name("alias") or spec.child_by_field_name("name")
                    yield text(local), "import", spec, local
            elif part.type == "identifier":  # a default import
                yield text(part), "import", part, part


def _pattern_names(pattern: ts.Node | None) -> Iterator[ts.Node]:
    """The identifiers a binding pattern declares."""
    if pattern is None:
        return
    if pattern.type in ("identifier", "shorthand_property_identifier_pattern"):
        yield pattern
    elif pattern.type == "pair_pattern":
        yield from _pattern_names(pattern.child_by_field_name("value"))
    elif pattern.type in ("object_assignment_pattern", "assignment_pattern"):
        yield from _pattern_names(pattern.child_by_field_name("left"))
    else:  # object_pattern, array_pattern, rest_pattern
        for child in pattern.named_children:
            yield from _pattern_names(child)


def _parameters(function: ts.Node) -> list[ts.Node]:
    params = function.child_by_field_name("parameters") or function.child_by_field_name("parameter")
    if params is None:
        return []
    if params.type == "identifier":  # `x => ...`
        return [params]
    return [p for p in params.named_children if p.type in ("required_parameter", "optional_parameter", "identifier")]


def function_name(function: ts.Node) -> str | None:
    """The name a function is called by: its own, its variable's, its property's or its method's."""
    name = function.child_by_field_name("name")
    if name is not None:
        return text(name)
    parent = function.parent
    if parent is not None and parent.type == "variable_declarator":
        return text(parent.child_by_field_name("name"))
    if parent is not None and parent.type == "pair":
        return text(parent.child_by_field_name("key")).strip("'\"")
    if parent is not None and parent.type == "assignment_expression":
        left = parent.child_by_field_name("left")
        return text(left.child_by_field_name("property") if left.type == "member_expression" else left)
    return None


class Resolver:
    """What an expression or a type can hold, as items. `through_parameters=False` stops at parameters:
    for a table name, where binding a parameter to all its callers' arguments would pair them wrongly."""

    def __init__(self, tree: SourceTree, *, through_parameters: bool = True):
        self.tree = tree
        self.through_parameters = through_parameters
        self._scopes: dict[tuple[str, int], dict[str, list[tuple[str, ts.Node, ts.Node]]]] = {}
        self._assignments: dict[tuple[str, int], dict[str, list[ts.Node]]] = {}
        self._memo: dict[tuple[str, int], list[Item]] = {}
        self._cuts = 0  # cycles cut so far: a result computed while one was cut is not memoized

    # -- expressions --------------------------------------------------------------------------

    def items(self, node: ts.Node, file: SourceFile, seen: frozenset = frozenset()) -> list[Item]:
        """Memoized where no cycle was cut below: such a result does not depend on the path that reached it."""
        key = (file.rel, node.id)
        if key in self._memo:
            return self._memo[key]
        if key in seen or len(seen) > _MAX_DEPTH:
            self._cuts += 1
            return [] if key in seen else [Unbounded(_brief(node), file.at(node), "too deep to follow")]
        cuts = self._cuts
        found = self._items(node, file, seen | {key})
        if self._cuts == cuts:
            self._memo[key] = found
        return found

    def _items(self, node: ts.Node, file: SourceFile, seen: frozenset) -> list[Item]:
        kind = node.type
        if kind == "string" or (kind == "template_string" and not any(
                c.type == "template_substitution" for c in node.named_children)):
            return [Located(string_value(node), file.at(node))]
        if kind in _TRANSPARENT and node.named_children:
            return self.items(node.named_children[0], file, seen)
        if kind == "as_expression":
            inner = self.items(node.named_children[0], file, seen)
            if len(node.named_children) > 1:  # `x as JobStatus`; `as const` has no type
                return narrowest(inner, self.type_items(node.named_children[1], file, seen))
            return inner
        if kind == "ternary_expression":
            return _unique(self.items(node.child_by_field_name("consequence"), file, seen)
                           + self.items(node.child_by_field_name("alternative"), file, seen))
        if kind == "binary_expression":
            operator = text(node.child_by_field_name("operator"))
            right = self.items(node.child_by_field_name("right"), file, seen)
            if operator in ("||", "??"):
                return _unique(self.items(node.child_by_field_name("left"), file, seen) + right)
            if operator == "&&":
                return right
            if operator == "+":
                return [Unbounded(_brief(node), file.at(node), "a string built at run time")]
            return []  # arithmetic and comparisons: numbers and booleans, never text
        if kind == "identifier":
            return self._identifier(node, file, seen)
        if kind == "member_expression":
            prop = node.child_by_field_name("property")
            base = self.items(node.child_by_field_name("object"), file, seen)
            return _unique([_anchored(i, node, file) if isinstance(i, Unbounded) else i
                            for i in member(base, text(prop))])
        if kind == "subscript_expression":
            index = self.items(node.child_by_field_name("index"), file, seen)
            base = self.items(node.child_by_field_name("object"), file, seen)
            if index and all(isinstance(i, Located) for i in index):
                return _unique([x for i in index for x in member(base, i.value)])
            return [Unbounded(_brief(node), file.at(node), "an index the code computes")]
        if kind == "object":
            return [self._object(node, file, seen)]
        if kind == "array":
            return _unique([x for element in node.named_children for x in self.items(element, file, seen)])
        if kind == "spread_element":
            return self.items(node.named_children[0], file, seen)
        if kind == "call_expression":
            return self._call(node, file, seen)
        if kind in ("number", "true", "false", "null", "undefined", "unary_expression", "update_expression",
                    "arrow_function", "function_expression", "regex", "comment"):
            return []  # not text
        return [Unbounded(_brief(node), file.at(node), f"{kind.replace('_', ' ')}: no literal bound")]

    def _object(self, node: ts.Node, file: SourceFile, seen: frozenset) -> Shape:
        shape = Shape({}, at=file.at(node))
        for part in node.named_children:
            if part.type == "pair":
                key, value = part.child_by_field_name("key"), part.child_by_field_name("value")
                for name in self._keys(key, file, seen, shape):
                    shape.props[name] = _later(self.items, value, file, seen)
            elif part.type == "shorthand_property_identifier":
                shape.props[text(part)] = _later(self._identifier, part, file, seen)
            elif part.type == "spread_element":
                for item in self.items(part.named_children[0], file, seen):
                    if isinstance(item, Shape):
                        shape.props.update(item.props)
                        shape.opaque += item.opaque
                        shape.exact &= item.exact
                    elif isinstance(item, Unbounded):
                        shape.opaque.append(item)
        return shape

    def _keys(self, key: ts.Node, file: SourceFile, seen: frozenset, shape: Shape) -> list[str]:
        if key.type == "computed_property_name":
            names = self.items(key.named_children[0], file, seen)
            if names and all(isinstance(n, Located) for n in names):
                return [n.value for n in names]
            shape.opaque.append(Unbounded(_brief(key), file.at(key), "a property name the code computes"))
            return []
        return [string_value(key) if key.type == "string" else text(key)]

    def _identifier(self, node: ts.Node, file: SourceFile, seen: frozenset) -> list[Item]:
        name = text(node)
        if name == "undefined":
            return []
        binding = self.lookup(name, node, file, _VALUE_KINDS)
        if binding is None:
            return [Unbounded(name, file.at(node), "not declared in the source tree")]
        return self._binding_items(binding, node, file, seen)

    def _binding_items(self, binding: Binding, use: ts.Node, file: SourceFile, seen: frozenset) -> list[Item]:
        kind, decl, where = binding.kind, binding.node, binding.file
        if kind == "var":
            return self._variable(binding, seen)
        if kind == "param":
            return self._parameter(binding, seen)
        if kind == "enum":
            return [self._enum(decl, where, seen)]
        if kind == "import":
            target = self._imported(binding)
            if target is None:
                return [Unbounded(text(use), file.at(use), "imported from outside the source tree")]
            return self._binding_items(target, use, file, seen)
        return []  # functions and classes are not values a column holds

    def _variable(self, binding: Binding, seen: frozenset) -> list[Item]:
        declarator, file = binding.node, binding.file
        init = declarator.child_by_field_name("value")
        pattern = declarator.child_by_field_name("name")
        found = self.items(init, file, seen) if init is not None else []
        found = self._destructure(found, pattern, binding.name_node, file, seen)
        scope = _enclosing(declarator, _SCOPES)
        if pattern.type == "identifier" and scope is not None:
            found += self._assigned(text(pattern), scope, file, seen)
        annotation = declarator.child_by_field_name("type")
        if annotation is not None and pattern.type == "identifier":
            return narrowest(_unique(found), self.type_items(annotation, file, seen))
        return _unique(found)

    def _assigned(self, name: str, scope: ts.Node, file: SourceFile, seen: frozenset) -> list[Item]:
        """`name = v` anywhere in its scope, and `name.prop = v` as one more shape of the object."""
        found, later = [], Shape({}, at=file.at(scope))
        for assignment in self._assignments_in(scope, file).get(name, ()):
            left, right = assignment.child_by_field_name("left"), assignment.child_by_field_name("right")
            if left.type == "identifier":
                found += self.items(right, file, seen)
            else:
                key = left.child_by_field_name("property") or left.child_by_field_name("index")
                prop = string_value(key) if key.type == "string" else text(key)
                previous = later.props.get(prop)
                value = _later(self.items, right, file, seen)
                later.props[prop] = value if previous is None else _both(previous, value)
        return found + ([later] if later.props else [])

    def _assignments_in(self, scope: ts.Node, file: SourceFile) -> dict[str, list[ts.Node]]:
        """`x = v` and `x.p = v` (or `x['p'] = v`) in a scope, by the name of `x`."""
        key = (file.rel, scope.id)
        if key not in self._assignments:
            by_name = defaultdict(list)
            for assignment in _descendants(scope, "assignment_expression"):
                left = assignment.child_by_field_name("left")
                if left.type in ("member_expression", "subscript_expression"):
                    left = left.child_by_field_name("object")
                if left.type == "identifier":
                    by_name[text(left)].append(assignment)
            self._assignments[key] = by_name
        return self._assignments[key]

    def _destructure(self, found: list[Item], pattern: ts.Node, ident: ts.Node, file: SourceFile,
                     seen: frozenset) -> list[Item]:
        """Follow the path from a binding pattern's root down to `ident`, adding defaults on the way."""
        steps, node = [], ident
        while node != pattern:
            parent = node.parent
            if parent.type == "pair_pattern":
                key = parent.child_by_field_name("key")
                steps.append(("key", string_value(key) if key.type == "string" else text(key)))
            elif node.type == "shorthand_property_identifier_pattern":
                steps.append(("key", text(node)))
            elif parent.type in ("object_assignment_pattern", "assignment_pattern"):
                steps.append(("default", parent.child_by_field_name("right")))
            elif parent.type in ("array_pattern", "rest_pattern"):
                return [Unbounded(text(ident), file.at(ident), "destructured from an array or a rest")]
            node = parent
        for step, arg in reversed(steps):
            found = member(found, arg) if step == "key" else _unique(found + self.items(arg, file, seen))
        return found

    def _parameter(self, binding: Binding, seen: frozenset) -> list[Item]:
        param, file = binding.node, binding.file
        function = _enclosing(param, _FUNCTIONS)
        pattern = param if param.type == "identifier" else param.child_by_field_name("pattern")
        default = [] if param.type == "identifier" else (
            self.items(param.child_by_field_name("value"), file, seen) if param.child_by_field_name("value") else [])
        annotation = None if param.type == "identifier" else param.child_by_field_name("type")
        typed = self.type_items(annotation, file, seen) if annotation is not None else []
        if not self.through_parameters:
            return [Unbounded(text(binding.name_node), file.at(binding.name_node), "a parameter")]
        if _literals(typed):
            return _unique(self._destructure(typed, pattern, binding.name_node, file, seen) + default)
        callers = self._arguments(function, _parameters(function).index(param), file, seen)
        if callers is None and not typed:
            callers = [Unbounded(text(param), file.at(param), "no call site found")]
        found = narrowest(callers, typed)
        return _unique(self._destructure(found, pattern, binding.name_node, file, seen) + default)

    def _arguments(self, function: ts.Node, index: int, file: SourceFile, seen: frozenset) -> list[Item] | None:
        """What the callers pass for a parameter; None when no caller is found."""
        parent = function.parent
        if parent is not None and parent.type == "arguments":  # a callback: its caller is the callee
            callee = parent.parent.child_by_field_name("function")
            if index == 0 and callee.type == "member_expression" and text(callee.child_by_field_name("property")) in (
                    _MAPPING | {"forEach", "filter", "find", "some", "every"}):
                return self.items(callee.child_by_field_name("object"), file, seen)  # the array's elements
            param = _parameters(function)[index]
            return [Unbounded(_brief(param), file.at(param), f"an argument {_brief(callee)} passes its callback")]
        name = function_name(function)
        calls = self.tree.calls_by_name.get(name, []) if name else []
        if not calls:
            return None
        found = []
        for caller, call in calls:
            args = [a for a in call.child_by_field_name("arguments").named_children if a.type != "comment"]
            if index < len(args):
                if args[index].type == "spread_element":
                    found.append(Unbounded(_brief(args[index]), caller.at(args[index]), "arguments spread"))
                else:
                    found += self.items(args[index], caller, seen)
        return found

    def _call(self, node: ts.Node, file: SourceFile, seen: frozenset) -> list[Item]:
        callee = node.child_by_field_name("function")
        args = [a for a in node.child_by_field_name("arguments").named_children if a.type != "comment"]
        if callee.type == "member_expression":
            method = text(callee.child_by_field_name("property"))
            target = callee.child_by_field_name("object")
            if method in _MAPPING and args:
                return _unique([x for f in self._functions(args[0], file, seen) for x in self._returns(f, seen)])
            if method in _SAME_ELEMENTS:
                extra = [x for a in args for x in self.items(a, file, seen)] if method == "concat" else []
                return _unique(self.items(target, file, seen) + extra)
            if target.type == "this":
                owner = _enclosing(node, {"class_body"})
                methods = [m for m in (owner.named_children if owner else ())
                           if m.type == "method_definition" and text(m.child_by_field_name("name")) == method]
                if methods:
                    return _unique([x for m in methods for x in self._returns((m, file), seen)])
        elif callee.type == "identifier":
            functions = self._functions(callee, file, seen)
            if functions:
                return _unique([x for f in functions for x in self._returns(f, seen)])
        return [Unbounded(_brief(node), file.at(node), "the result of a call")]

    def _functions(self, node: ts.Node, file: SourceFile, seen: frozenset) -> list[tuple[ts.Node, SourceFile]]:
        """The function(s) an expression names: itself, or its declaration through variables and imports."""
        if node.type in _FUNCTIONS:
            return [(node, file)]
        if node.type != "identifier":
            return []
        binding = self.lookup(text(node), node, file, _VALUE_KINDS)
        while binding is not None and binding.kind == "import":
            binding = self._imported(binding)
        if binding is None:
            return []
        if binding.kind == "function":
            return [(binding.node, binding.file)]
        init = binding.node.child_by_field_name("value") if binding.kind == "var" else None
        return [(init, binding.file)] if init is not None and init.type in _FUNCTIONS else []

    def _returns(self, function: tuple[ts.Node, SourceFile], seen: frozenset) -> list[Item]:
        node, file = function
        body = node.child_by_field_name("body")
        if body is None:
            return []
        if body.type != "statement_block":
            return self.items(body, file, seen)  # an arrow's expression body
        return [x for r in _descendants(body, "return_statement", into_functions=False) if r.named_children
                for x in self.items(r.named_children[0], file, seen)]

    def _enum(self, node: ts.Node, file: SourceFile, seen: frozenset) -> Shape:
        shape = Shape({}, at=file.at(node))
        for member_node in node.child_by_field_name("body").named_children:
            if member_node.type == "enum_assignment":
                value = member_node.child_by_field_name("value")
                shape.props[text(member_node.child_by_field_name("name"))] = _later(self.items, value, file, seen)
        return shape

    # -- types --------------------------------------------------------------------------------

    def type_items(self, node: ts.Node, file: SourceFile, seen: frozenset = frozenset()) -> list[Item]:
        key = (file.rel, node.id)
        if key in seen:
            return []
        seen = seen | {key}
        kind = node.type
        named = node.named_children
        if kind in ("type_annotation", "parenthesized_type", "readonly_type", "opting_type_annotation"):
            return self.type_items(named[0], file, seen)
        if kind == "literal_type":
            return [Located(string_value(named[0]), file.at(named[0]))] if named[0].type == "string" else []
        if kind == "union_type":
            return _unique([x for n in named for x in self.type_items(n, file, seen)])
        if kind == "predefined_type":
            if text(node) in ("string", "any", "unknown", "object"):
                return [Unbounded(_brief(_declaring(node)), file.at(node), f"typed {text(node)}")]
            return []
        if kind == "type_identifier":
            return self._named_type(node, file, seen)
        if kind == "generic_type":
            name = text(node.child_by_field_name("name"))
            args = node.child_by_field_name("type_arguments").named_children
            if name in _TYPE_WRAPPERS and args:
                return self.type_items(args[0], file, seen)
            if name in ("Pick", "Omit") and len(args) == 2:
                keys = {i.value for i in self.type_items(args[1], file, seen) if isinstance(i, Located)}
                return [_select(s, keys, keep=name == "Pick") if isinstance(s, Shape) else s
                        for s in self.type_items(args[0], file, seen)]
            return self._named_type(node.child_by_field_name("name"), file, seen)
        if kind == "lookup_type":
            base = self.type_items(named[0], file, seen)
            if named[1].type == "predefined_type" and text(named[1]) == "number":
                return base  # arrays are already their elements
            keys = self.type_items(named[1], file, seen)
            return _unique([x for k in keys if isinstance(k, Located) for x in member(base, k.value)])
        if kind == "type_query":
            return self.items(named[0], file, seen)
        if kind in ("object_type", "interface_body"):
            return [self._members(node, file, seen)]
        if kind == "intersection_type":
            merged = Shape({}, at=file.at(node))
            for part in (x for n in named for x in self.type_items(n, file, seen)):
                if isinstance(part, Shape):
                    merged.props.update(part.props)
                    merged.exact &= part.exact
            return [merged]
        if kind in ("array_type", "tuple_type", "function_type"):
            return []
        return [Unbounded(_brief(node), file.at(node), f"a {kind.replace('_', ' ')}")]

    def _named_type(self, name: ts.Node, file: SourceFile, seen: frozenset) -> list[Item]:
        binding = self.lookup(text(name), name, file, _TYPE_KINDS)
        while binding is not None and binding.kind == "import":
            binding = self._imported(binding)
        if binding is None or binding.kind == "class":
            return [Unbounded(text(name), file.at(name), "a type outside the source tree")]
        decl, where = binding.node, binding.file
        if binding.kind == "type":
            return self.type_items(decl.child_by_field_name("value"), where, seen)
        if binding.kind == "enum":
            shape = self._enum(decl, where, seen)
            return _unique([x for value in shape.props.values() for x in value()])
        shape = self._members(decl.child_by_field_name("body"), where, seen)  # an interface
        for clause in (c for c in decl.named_children if c.type == "extends_type_clause"):
            for base in clause.named_children:
                for part in self.type_items(base, where, seen):
                    if isinstance(part, Shape):
                        shape.props = {**part.props, **shape.props}
                        shape.exact &= part.exact
                    else:
                        shape.exact = False
        return [shape]

    def _members(self, body: ts.Node, file: SourceFile, seen: frozenset) -> Shape:
        shape = Shape({}, at=file.at(body))
        for part in body.named_children:
            if part.type == "property_signature" and part.child_by_field_name("type") is not None:
                name = part.child_by_field_name("name")
                key = string_value(name) if name.type == "string" else text(name)
                shape.props[key] = _later(self.type_items, part.child_by_field_name("type"), file, seen)
            elif part.type == "index_signature":
                shape.exact = False
        return shape

    # -- declarations ---------------------------------------------------------------------------

    def lookup(self, name: str, use: ts.Node, file: SourceFile, kinds: set[str]) -> Binding | None:
        """The declaration of `name` visible at `use`: the nearest enclosing scope first."""
        node = use
        while node is not None:
            if node.type in _FUNCTIONS:
                for param in _parameters(node):
                    pattern = param if param.type == "identifier" else param.child_by_field_name("pattern")
                    for ident in _pattern_names(pattern):
                        if text(ident) == name and "param" in kinds:
                            return Binding("param", param, ident, file)
            if node.type in _SCOPES:
                for kind, decl, ident in self._scope(node, file).get(name, ()):
                    if kind in kinds:
                        return Binding(kind, decl, ident, file)
            node = node.parent
        return None

    def _scope(self, scope: ts.Node, file: SourceFile) -> dict[str, list[tuple[str, ts.Node, ts.Node]]]:
        key = (file.rel, scope.id)
        if key not in self._scopes:
            names = defaultdict(list)
            for statement in scope.named_children:
                for name, kind, decl, ident in _declared(statement):
                    names[name].append((kind, decl, ident))
            self._scopes[key] = names
        return self._scopes[key]

    def _imported(self, binding: Binding) -> Binding | None:
        """The declaration an import specifier (or default import) names, in the file it comes from."""
        spec = binding.node
        statement = _enclosing(spec, {"import_statement"})
        source = self.tree.module(binding.file, string_value(statement.child_by_field_name("source")))
        if source is None:
            return None
        name = "default" if spec.type == "identifier" else text(spec.child_by_field_name("name"))
        return self.exported(source, name, frozenset())

    def exported(self, file: SourceFile, name: str, seen: frozenset) -> Binding | None:
        if file.rel in seen:
            return None
        seen = seen | {file.rel}
        for kind, decl, ident in self._scope(file.tree.root_node, file).get(name, ()):
            return Binding(kind, decl, ident, file)
        for spec in file.exports.get(name, []):
            statement = _enclosing(spec, {"export_statement"})
            local = text(spec.child_by_field_name("name"))
            source = statement.child_by_field_name("source")
            if source is None:
                return self.exported(file, local, seen)
            target = self.tree.module(file, string_value(source))
            return self.exported(target, local, seen) if target else None
        for statement in file.exports.get("*", []):
            target = self.tree.module(file, string_value(statement.child_by_field_name("source")))
            found = self.exported(target, name, seen) if target else None
            if found:
                return found
        return None


def narrowest(found: list[Item] | None, typed: list[Item]) -> list[Item]:
    """What the code holds (`found`: initializers, callers' arguments) narrowed by its declared type:
    literals found win, then a type's literals; objects are narrowed property by property."""
    if found is None:
        return typed
    if not typed or _literals(found):
        return found
    if _literals(typed):
        return typed
    shapes = [t for t in typed if isinstance(t, Shape)]
    if not shapes:
        return found
    narrowed = [Shape({k: _narrowed([item], shapes, k) for k in item.props}, item.exact, item.opaque, item.at)
                for item in found if isinstance(item, Shape)]
    unknown = [item for item in found if isinstance(item, Unbounded)]
    if unknown:  # the type says which properties they can have
        keys = {k: None for s in shapes for k in s.props}
        narrowed.append(Shape({k: _narrowed(unknown, shapes, k) for k in keys}, all(s.exact for s in shapes),
                              at=unknown[0].at))
    return narrowed


def _narrowed(items: list[Item], shapes: list[Shape], key: str) -> Callable[[], list[Item]]:
    return lambda: narrowest(member(items, key), member(shapes, key))


def _literals(items: list[Item]) -> bool:
    """Only literal values (no object, nothing unbounded), at least one."""
    return bool(items) and all(isinstance(i, Located) for i in items)


def member(items: list[Item], name: str) -> list[Item]:
    """The items of property `name` of each object among `items`."""
    found = []
    for item in items:
        if isinstance(item, Shape):
            if name in item.props:
                found += item.props[name]()
            elif not item.exact or item.opaque:
                found += [u.member(name) for u in item.opaque] or [
                    Unbounded(name, item.at, "a property of an object not seen whole")]
        elif isinstance(item, Unbounded):
            found.append(item.member(name))
    return _unique(found)


def _anchored(item: Unbounded, node: ts.Node, file: SourceFile) -> Unbounded:
    """The same unknown, named where it is used, with where it comes from."""
    here = file.at(node)
    reason = item.reason if item.at == here or " via " in item.reason else f"{item.reason}, via {item.expression} at {item.at}"
    return Unbounded(_brief(node), here, reason)


def _select(shape: Shape, keys: set[str], *, keep: bool) -> Shape:
    return Shape({k: v for k, v in shape.props.items() if (k in keys) == keep}, shape.exact, shape.opaque, shape.at)


def _later(resolve, node: ts.Node, file: SourceFile, seen: frozenset) -> Callable[[], list[Item]]:
    return lambda: resolve(node, file, seen)


def _both(first: Callable[[], list[Item]], second: Callable[[], list[Item]]) -> Callable[[], list[Item]]:
    return lambda: _unique(first() + second())


def _unique(items: list[Item]) -> list[Item]:
    return list(dict.fromkeys(items))


def _enclosing(node: ts.Node, types: set[str]) -> ts.Node | None:
    node = node.parent
    while node is not None and node.type not in types:
        node = node.parent
    return node


def _declaring(node: ts.Node) -> ts.Node:
    """The declaration a type belongs to (a member, a parameter, an alias), to name it in a report."""
    found = _enclosing(node, {"property_signature", "required_parameter", "optional_parameter",
                              "type_alias_declaration", "variable_declarator"})
    return found or node


def _descendants(node: ts.Node, kind: str, *, into_functions: bool = True) -> Iterator[ts.Node]:
    stack = list(reversed(node.named_children))
    while stack:
        current = stack.pop()
        if current.type == kind:
            yield current
        if into_functions or current.type not in _FUNCTIONS:
            stack.extend(reversed(current.named_children))
