"""Writes tests/fixtures/chat-templates/jinja_cases.json: small templates, each rendered by Jinja2
set up as Hugging Face transformers sets it up for chat templates (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, transformers' tojson and raise_exception), so the C
renderer's unit tests compare with Jinja itself. A case Jinja refuses records "error": true.

Run with Jinja2 3.x installed (not needed by the test suite):
    python3 tests/gen/make_jinja_cases.py tests/fixtures/chat-templates/jinja_cases.json
"""
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
        {"role": "tool", "content": "ok"}, {"role": "user", "content": "Bye \u00e9\u4e2d"}]
D = {"b": 1, "a": [1, 2.5, None, True, "s"], "c": {"d": "e"}, "items": 3}

CASES = [
    # whitespace control
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nend", {}),
    ("lstrip_blocks", "  {% if true %}\n  body\n  {% endif %}\ntail", {}),
    ("lstrip_not_after_text", "x {% if true %}y{% endif %}", {}),
    ("lstrip_var_tag_kept", "  {{ 1 }}\n", {}),
    ("minus_both_sides", "a  \n  {%- if true -%}  \n  b  \n  {%- endif -%}  \n  c", {}),
    ("minus_var", "a \n {{- 'b' -}} \n c", {}),
    ("plus_keeps_lstrip", "  {%+ if true %}x{% endif %}", {}),
    ("plus_keeps_trim", "{% if true +%}\nx{% endif %}", {}),
    ("comment", "a {# note #}\nb\n  {# indented #}\nc", {}),
    ("comment_minus", "a   {#- note -#}   b", {}),
    ("raw", "{% raw %}{{ not parsed }} {% if %}{% endraw %}!", {}),
    ("trailing_newline_dropped", "x\n", {}),
    ("two_trailing_newlines", "x\n\n", {}),
    ("crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", {}),
    ("trim_after_var_not", "{{ 'a' }}\nb", {}),
    ("nested_lstrip", "{% for i in [1,2] %}\n    {% if i %}\n    {{ i }}\n    {% endif %}\n{% endfor %}", {}),
    # literals and output
    ("str_of_values", "{{ none }}|{{ true }}|{{ 3 }}|{{ 2.5 }}|{{ 1.0 }}|{{ 1e20 }}|{{ 1e-7 }}|{{ 'x' }}", {}),
    ("repr_list", "{{ [1, 'a', none, true, 1.5, {'k': \"it's\"}, [\"q\\\"\"]] }}", {}),
    ("repr_tuple", "{{ (1, 2) }}{{ (1,) }}{{ () }}", {}),
    ("repr_unicode", "{{ ['\u00e9', '\\n\\t', '\\x01', '\u200b', '\U0001F600'] }}", {}),
    ("repr_dict_json", "{{ d }}", {"d": D}),
    ("string_escapes", "{{ 'a\\nb\\tc\\\\d\\'e\\u00e9\\x41' }}|{{ \"q\\\"\" }}|{{ 'a' 'b' \"c\" }}", {}),
    ("undefined_prints_empty", "[{{ nope }}][{{ d.nope }}][{{ d['nope'] }}]", {"d": {}}),
    ("integer_literals", "{{ 1_000 }} {{ 0 }} {{ -5 }} {{ 1.5e3 }}", {}),
    # operators
    ("arithmetic", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }} {{ 2 ** 3 ** 2 }} {{ 2 ** -1 }}", {}),
    ("float_arithmetic", "{{ 0.1 + 0.2 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 1 + 2.0 }} {{ true + 1 }}", {}),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 * 3 ~ 4 }} {{ 'a' ~ (1 + 2) }} {{ -2 ** 2 }} {{ not 1 == 2 }} {{ 10 - 2 - 3 }} {{ 2 ** 3 * 2 }}", {}),
    ("err_concat_binds_tighter_than_plus", "{{ 1 + 2 ~ 3 + 4 }}", {}),
    ("filter_binds_tight", "{{ '\\n' + s | trim + '\\n' }}", {"s": "  x  "}),
    ("concat_tilde", "{{ 1 ~ 'a' ~ none ~ true ~ [1] ~ nope }}", {}),
    ("string_ops", "{{ 'ab' + 'cd' }} {{ 'ab' * 3 }} {{ 2 * 'x' }} {{ [1] * 2 }} {{ [1] + [2] }}", {}),
    ("compare_chain", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ 'a' != 'b' }}", {}),
    ("in_operator", "{{ 'b' in 'abc' }} {{ 'x' not in 'abc' }} {{ 2 in [1, 2] }} {{ 'a' in d }} {{ 'z' in d }} {{ 'a' in nope }}", {"d": D}),
    ("and_or_values", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }}|{{ none or [] }}|{{ nope or 'dflt' }}", {}),
    ("cond_expr", "{{ 'y' if 1 else 'n' }} {{ 'y' if 0 else 'n' }} [{{ 'y' if 0 }}] {{ 'a' if 0 else 'b' if 0 else 'c' }}", {}),
    ("unary", "{{ -3 }} {{ +3 }} {{ -(2) }} {{ - 2.5 }} {{ not true }} {{ not not 1 }} {{ -3|abs }}", {}),
    ("equality_types", "{{ [1] == (1,) }} {{ {'a': 1} == {'a': 1} }} {{ none == none }} {{ nope == nope }} {{ 1 == true }}", {}),
    # subscripts and slices
    ("index_and_attr", "{{ m[1].content }} {{ m[1]['role'] }} {{ m[-1].content }} {{ m.0.role }} {{ d.c.d }}", {"m": MSGS, "d": D}),
    ("slices", "{{ m[1:3]|length }} {{ m[::-1][0].role }} {{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ 'h\u00e9llo'[1] }} {{ [1,2,3,4,5][::2] }} {{ [1,2,3][-2:] }} {{ 'abc'[5:] }}", {"m": MSGS}),
    ("dict_method_shadows_key", "{{ d['items'] }} {{ d.b }} {{ d.get('b') }} {{ d.get('zz', 'no') }} {{ d.get('zz') }}", {"d": D}),
    ("out_of_range_undefined", "[{{ [1][5] }}][{{ 'ab'[9] }}] {{ [1][5] is defined }}", {}),
    # if / for
    ("if_elif_else", "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %} {% endfor %}", {}),
    ("loop_vars", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", {}),
    ("loop_prev_next", "{% for x in [1, 2, 3] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}", {}),
    ("for_if", "{% for x in range(10) if x is odd %}{{ x }}{{ loop.index }}{{ loop.last }} {% endfor %}", {}),
    ("for_else", "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in [1] if x > 5 %}x{% else %}none{% endfor %}", {}),
    ("for_dict_and_items", "{% for k in d %}{{ k }},{% endfor %}|{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d.items() %}{{ k }}{% endfor %}", {"d": {"x": 1, "y": [2]}}),
    ("for_unpack_tuple", "{% for a, b in [[1, 2], (3, 4)] %}{{ a }}{{ b }}{% endfor %}", {}),
    ("nested_loops", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }} {% endfor %}", {}),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("loop_scope", "{% set n = 0 %}{% for x in [1, 2] %}{% set n = n + x %}{{ n }}{% endfor %}{{ n }}", {}),
    ("loop_var_set_each_iteration", "{% for i in range(3) %}{% if i == 1 %}[{{ x }}]{% endif %}{% set x = i %}{% endfor %}[{{ x }}]", {}),
    ("namespace", "{% set ns = namespace(n=0, s='') %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}{% set ns.s = ns.s ~ x %}{% endfor %}{{ ns.n }} {{ ns.s }}", {}),
    ("namespace_in_macro", "{% set ns = namespace(c=0) %}{% macro bump() %}{% set ns.c = ns.c + 1 %}{% endmacro %}{{ bump() }}{{ bump() }}{{ ns.c }}", {}),
    ("set_multiple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c, d = [3, 4] %}{{ c }}{{ d }}", {}),
    ("block_set", "{% set x %}hello {{ 1 + 1 }}{% endset %}[{{ x }}]{% set y | upper %}abc{% endset %}{{ y }}", {}),
    ("set_in_if_is_global", "{% if true %}{% set v = 5 %}{% endif %}{{ v }}", {}),
    ("shadow_loop_var", "{% for t in ts %}{% if t.function %}{% set t = t.function %}{% endif %}{{ t.name }};{% endfor %}", {"ts": [{"function": {"name": "a"}}, {"name": "b"}]}),
    ("with_block", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]", {}),
    ("filter_block", "{% filter upper %}abc{{ 'd' }}{% endfilter %}", {}),
    # macros
    ("macro_defaults", "{% macro m(a, b=2, c='x') %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, 3) }} {{ m(1, c='y') }} {{ m(a=5) }}", {}),
    ("macro_missing_arg_undefined", "{% macro m(a, b) %}[{{ a }}][{{ b }}]{{ b is defined }}{% endmacro %}{{ m(1) }}", {}),
    ("macro_sees_globals_late", "{% macro m() %}{{ g }}{% endmacro %}{% set g = 7 %}{{ m() }}", {}),
    ("macro_recursion", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}", {}),
    ("macro_output_filtered", "{% macro m(x) %}  {{ x }}  {% endmacro %}[{{ m('a')|trim }}]{{ m('b')|length }}", {}),
    ("macro_default_uses_param", "{% macro m(a, b=a * 2) %}{{ b }}{% endmacro %}{{ m(4) }}", {}),
    # tests
    ("tests_types", "{% for v in [none, true, 1, 1.5, 's', [1], {'a': 1}] %}{{ v is none }}{{ v is boolean }}{{ v is integer }}{{ v is float }}{{ v is number }}{{ v is string }}{{ v is sequence }}{{ v is mapping }}{{ v is iterable }} {% endfor %}", {}),
    ("tests_undefined", "{{ nope is defined }}{{ nope is undefined }}{{ nope is sequence }}{{ nope is iterable }}{{ nope is none }}{{ nope is mapping }}{{ nope is string }}", {}),
    ("tests_misc", "{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ 1 is in [1, 2] }}{{ 2 is eq 2 }}{{ 2 is equalto 3 }}{{ 3 is gt 2 }}{{ 3 is ge 4 }}{{ 'a' is ne 'b' }}{{ true is true }}{{ 1 is true }}{{ false is false }}", {}),
    ("test_not", "{{ x is not none }} {{ x is not defined }} {{ nope is not defined }}", {"x": 1}),
    ("test_in_condition", "{% if m.reasoning is defined and m.reasoning is not none %}r{% else %}n{% endif %}", {"m": {"reasoning": None}}),
    # filters
    ("f_length_count", "{{ 'h\u00e9\u4e2d'|length }} {{ [1, 2]|count }} {{ {'a': 1}|length }} {{ nope|length }}", {}),
    ("f_trim", "[{{ '  a b \\n'|trim }}][{{ 'xxaxx'|trim('x') }}][{{ '\u3000a\u00a0'|trim }}]", {}),
    ("f_string", "{{ 1|string }}{{ none|string }}{{ [1, 'a']|string }}{{ true|string ~ '!' }}", {}),
    ("f_default", "{{ nope|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ none|default('d') }} {{ 0|d(5, boolean=true) }} [{{ nope|default }}]", {}),
    ("f_first_last", "{{ [1, 2, 3]|first }}{{ [1, 2, 3]|last }}{{ 'abc'|first }}{{ 'abc'|last }}[{{ []|first }}]", {}),
    ("f_join", "{{ [1, 2, 3]|join }} {{ ['a', 'b']|join(', ') }} {{ m|join('|', attribute='role') }}", {"m": MSGS}),
    ("f_list_reverse", "{{ 'abc'|list }} {{ [1, 2]|reverse|list }} {{ 'abc'|reverse }} {{ d|list }}", {"d": {"x": 1, "y": 2}}),
    ("f_upper_lower", "{{ 'Ab\u00e9'|upper }} {{ 'AB\u00c9'|lower }} {{ 'hello world-x (y'|title }} {{ 'hELLO'|capitalize }}", {}),
    ("f_replace", "{{ 'aaa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'abc'|replace('', '-') }}", {}),
    ("f_int_float", "{{ '12'|int }} {{ ' 7 '|int }} {{ '1.9'|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 'x'|float }} {{ 2|float }}", {}),
    ("f_round", "{{ 2.5|round }} {{ 3.5|round }} {{ 3.14159|round(2) }} {{ 2.675|round(2) }} {{ 2.1|round(0, 'ceil') }} {{ 2.9|round(0, 'floor') }} {{ 7|round }}", {}),
    ("f_abs", "{{ -3|abs }} {{ -2.5|abs }} {{ 4|abs }}", {}),
    ("f_items_dictsort", "{{ d|items|list }} {{ d|dictsort }} {{ d|dictsort(reverse=true) }} {{ {'b': 2, 'a': 3}|dictsort(by='value') }}", {"d": {"b": 1, "A": 2, "a": 3}}),
    ("f_sort", "{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'a', 'B']|sort }} {{ ['b', 'A', 'a']|sort(case_sensitive=true) }} {{ [3, 1, 2]|sort(reverse=true) }} {{ m|sort(attribute='role')|map(attribute='role')|join(',') }}", {"m": MSGS}),
    ("f_unique_min_max", "{{ ['a', 'A', 'b', 'a']|unique|list }} {{ [3, 1, 2]|min }} {{ [3, 1, 2]|max }} {{ ['b', 'A']|max }} {{ m|max(attribute='role') }}", {"m": [{"role": "a"}, {"role": "c"}, {"role": "b"}]}),
    ("f_map", "{{ m|map(attribute='role')|list }} {{ [1, 2]|map('string')|list }} {{ ['a', 'b']|map('upper')|join }} {{ m|map(attribute='nope', default='x')|list }} {{ ['ab']|map('replace', 'a', 'z')|list }}", {"m": MSGS[:2]}),
    ("f_select_reject", "{{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} {{ [0, 1, '', 'a']|select|list }} {{ [1, 5, 9]|select('gt', 4)|list }}", {}),
    ("f_selectattr", "{{ m|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ m|rejectattr('role', 'in', ['user', 'tool'])|map(attribute='role')|list }} {{ m|selectattr('tool_calls')|list|length }} {{ m|selectattr('tool_calls', 'defined')|list|length }}", {"m": MSGS}),
    ("f_selectattr_path", "{{ m|selectattr('tool_calls')|map(attribute='tool_calls.0.function.name')|list }}", {"m": MSGS}),
    ("f_sum", "{{ [1, 2, 3]|sum }} {{ [1.5, 2]|sum }} {{ m|sum(attribute='n') }} {{ [1]|sum(start=10) }}", {"m": [{"n": 2}, {"n": 5}]}),
    ("f_escape_safe", "{{ '<a href=\"x\">&\\'</a>'|e }} {{ '<b>'|escape }} {{ '<i>'|safe }}", {}),
    ("f_indent", "[{{ 'a\\nb\\n\\nc'|indent }}][{{ 'a\\nb'|indent(2, true) }}][{{ 'a\\n\\nb'|indent(2, blank=true) }}][{{ 'a\\nb\\n'|indent('> ') }}]", {}),
    ("f_tojson", "{{ d|tojson }}", {"d": D}),
    ("f_tojson_indent", "{{ d|tojson(indent=2) }}|{{ []|tojson(indent=2) }}|{{ {}|tojson(indent=4) }}|{{ [[]]|tojson(indent=1) }}", {"d": D}),
    ("f_tojson_options", "{{ {'b': 1, 'a': '\u00e9'}|tojson(sort_keys=true) }} {{ {'a': '\u00e9\U0001F600'}|tojson(ensure_ascii=true) }} {{ {'a': [1, 2]}|tojson(separators=(',', ':')) }}", {}),
    ("f_tojson_values", "{{ [1.0, 0.1, 1e16, 1e-5, 123.456, -0.0, 3, true, none, s]|tojson }}", {"s": "q\"\\\n\t\u0001\u007f\u00e9<>&'"}),
    ("f_tojson_nonstring_keys", "{{ {1: 'a', true: 'b', none: 'c', 2.5: 'd'}|tojson }}", {}),
    ("tool_call_args_render", "{% for k, v in args|items %}<{{ k }}>{{ v|tojson if v is mapping or (v is sequence and v is not string) else v|string }}</{{ k }}>{% endfor %}", {"args": {"s": "x", "n": 3, "f": 2.5, "b": True, "l": [1, "a"], "o": {"k": None}, "z": None}}),
    # string methods
    ("m_startswith_endswith", "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ 'abc'.startswith(('x', 'a')) }}{{ 'abc'.endswith('x') }}{{ ''.startswith('') }}", {}),
    ("m_strip", "[{{ '  a  '.strip() }}][{{ '\\n\\na\\n'.lstrip('\\n') }}][{{ '\\na\\n\\n'.rstrip('\\n') }}][{{ 'xyaxy'.strip('yx') }}][{{ ' a '.lstrip() }}][{{ ' a '.rstrip() }}]", {}),
    ("m_split", "{{ 'a,b,,c'.split(',') }} {{ ' a  b \\n c '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'x</think>y</think>z'.split('</think>')[-1] }} {{ 'abc'.split('x') }} {{ ''.split() }} {{ ''.split(',') }}", {}),
    ("m_case_and_more", "{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}{{ 'hello wORLD'.title() }}{{ 'hELLO'.capitalize() }}{{ 'aXa'.replace('a', 'b') }}{{ 'abcb'.find('b') }}{{ 'abc'.find('z') }}{{ 'abab'.count('ab') }}{{ '-'.join(['a', 'b']) }}", {}),
    ("m_is", "{{ '123'.isdigit() }}{{ '12a'.isdigit() }}{{ 'ab'.isalpha() }}{{ 'a1'.isalnum() }}{{ ' \\n'.isspace() }}{{ ''.isspace() }}", {}),
    ("m_splitlines", "{{ 'a\\nb\\n\\nc\\n'.splitlines() }}", {}),
    ("m_dict", "{{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list }}", {"d": {"x": 1, "y": [2]}}),
    ("m_list", "{{ [1, 2, 1].count(1) }} {{ [5, 6].index(6) }}", {}),
    ("qwen_reasoning_split", "{% set c = m.content %}{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[-1].lstrip('\\n') }}", {"m": {"content": "<think>\nr1\nr2\n</think>\n\nanswer"}}),
    ("globals", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }} {{ namespace(a=1).a }} {{ dict(a=1, b=2) }} {{ range(0)|list }}", {}),
    ("messages_loop_like_chat", "{% for message in messages %}{% if loop.first and message.role == 'system' %}S:{{ message.content }}\n{% elif message.role == 'tool' %}{% if loop.previtem and loop.previtem.role != 'tool' %}<r>{% endif %}{{ message.content }}{% if not loop.last and loop.nextitem.role != 'tool' %}</r>{% endif %}\n{% else %}{{ message.role }}: {{ message.content }}\n{% endif %}{% endfor %}", {"messages": MSGS}),
    # errors (Jinja refuses)
    ("err_undefined_attr", "{{ nope.x }}", {}),
    ("err_undefined_add", "{{ nope + 1 }}", {}),
    ("err_type_add", "{{ 'a' + 1 }}", {}),
    ("err_raise", "{{ raise_exception('custom failure') }}", {}),
    ("err_div_zero", "{{ 1 / 0 }}", {}),
    ("err_compare", "{{ 'a' < 1 }}", {}),
    ("err_mutate", "{{ [1].append(2) }}", {}),
    ("err_set_attr_not_ns", "{% set d = {} %}{% set d.x = 1 %}", {}),
    ("err_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("err_iterate_int", "{% for x in 3 %}{% endfor %}", {}),
    ("err_tojson_undefined", "{{ nope|tojson }}", {}),
    ("err_items_not_mapping", "{{ [1]|items|list }}", {}),
    ("err_none_iter", "{% for x in none %}{% endfor %}", {}),
    ("err_in_string_int", "{{ 1 in 'abc' }}", {}),
]


def render(template, context):
    try:
        return {"rendered": env.from_string(template).render(**context)}
    except Exception as e:  # noqa: BLE001 - any refusal is what the case records
        return {"error": True, "jinja_error": f"{type(e).__name__}: {e}"}


def main():
    out = {"generator": f"Jinja2 {jinja2.__version__} ImmutableSandboxedEnvironment(trim_blocks=True, "
                        "lstrip_blocks=True, loopcontrols) with transformers' tojson and raise_exception",
           "cases": []}
    names = set()
    for name, template, context in CASES:
        assert name not in names, name
        names.add(name)
        case = {"name": name, "template": template, "context": context}
        case.update(render(template, context))
        out["cases"].append(case)
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
