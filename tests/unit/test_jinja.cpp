// The Jinja engine's language, case by case: whitespace control and Hugging Face's trim_blocks /
// lstrip_blocks, expressions with Python's semantics, the loop variable, scopes and namespace,
// macros and call blocks, filters, tests and methods, tojson as Python's json.dumps writes it,
// errors with line and column, and the limits that keep a hostile template from hanging or
// exhausting the server. The expected texts are what Python's Jinja 3 renders with
// trim_blocks=True, lstrip_blocks=True (test_chat_template_oracle.cpp compares whole templates
// with @huggingface/jinja).
#include <catch2/catch.hpp>

#include "eep/coordinator/jinja/chat_template.h"
#include "eep/coordinator/jinja/template.h"

using namespace eep;
using namespace eep::coordinator::jinja;
using nlohmann::json;

namespace {

std::string render(const std::string& source,
                   const nlohmann::ordered_json& context = nlohmann::ordered_json::object(),
                   const TemplateOptions& options = {}) {
  auto parsed = Template::parse(source, options);
  INFO(source);
  INFO(parsed.status().to_string());
  REQUIRE(parsed.is_ok());
  auto text = parsed->render(context);
  INFO(text.status().to_string());
  REQUIRE(text.is_ok());
  return *text;
}

// The error of parsing or rendering `source` (which must fail).
Status failure(const std::string& source,
               const nlohmann::ordered_json& context = nlohmann::ordered_json::object(),
               const TemplateOptions& options = {}) {
  auto parsed = Template::parse(source, options);
  if (!parsed.is_ok()) return parsed.status();
  auto text = parsed->render(context);
  INFO(source);
  REQUIRE_FALSE(text.is_ok());
  return text.status();
}

}  // namespace

TEST_CASE("jinja: whitespace control and HF's trim_blocks and lstrip_blocks", "[jinja]") {
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it goes.
  CHECK(render("{% if true %}\nyes\n{% endif %}\nafter") == "yes\nafter");
  CHECK(render("  {% if true %}\n  x\n  {% endif %}\n") == "  x\n");
  // Not for {{ }}: its newline and indentation stay.
  CHECK(render("  {{ 1 }}\n  {{ 2 }}") == "  1\n  2");
  // lstrip only when nothing but spaces precede the tag on its line.
  CHECK(render("a {% if true %}b{% endif %}") == "a b");
  // {%+ keeps the indentation, +%} keeps the newline.
  CHECK(render("  {%+ if true %}x{% endif %}") == "  x");
  CHECK(render("{% if true +%}\nx{% endif %}") == "\nx");
  // '-' strips every whitespace on its side, newlines included.
  CHECK(render("a  \n {{- 'b' -}} \n  c") == "abc");
  CHECK(render("a\n\n{%- if true -%}\n\n b \n\n{%- endif -%}\n\nc") == "abc");
  // Comments: stripped, with the same whitespace rules as blocks.
  CHECK(render("a\n  {# note #}\nb") == "a\nb");
  CHECK(render("a {#- note -#} b") == "ab");
  // One trailing newline of the source goes (keep_trailing_newline=False); \r\n becomes \n.
  CHECK(render("x\n") == "x");
  CHECK(render("x\n\n") == "x\n");
  CHECK(render("a\r\nb") == "a\nb");
  // raw: tags inside are text.
  CHECK(render("{% raw %}{{ not rendered }}{% endraw %}") == "{{ not rendered }}");
}

TEST_CASE("jinja: expressions follow Python", "[jinja]") {
  CHECK(
      render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}") ==
      "7 3 -4 2 3.5 1024");
  CHECK(render("{{ 0.1 + 0.2 }} {{ 1.0 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 10 / 5 }}") ==
        "0.30000000000000004 1.0 1e+20 1.5e-07 2.0");
  CHECK(render("{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] + [2] }}") ==
        "a1NoneTrue ababab [1, 2]");
  CHECK(render("{{ none }} {{ undefined_name }}|{{ [1, 'a', none, {'k': 'v'}] }}") ==
        "None |[1, 'a', None, {'k': 'v'}]");
  CHECK(render("{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' < 'c' }} {{ 2 > 3 }}") ==
        "True True True False");
  CHECK(
      render("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }}") ==
      "True True True True");
  CHECK(render("{{ 'yes' if 0 else 'no' }} {{ 1 and 'x' }} {{ 0 or '' or 'z' }} {{ not [] }}") ==
        "no x z True");
  CHECK(render("{{ 'x' if false }}|") == "|");  // no else: undefined, printed as nothing
  // Slicing with steps, negative indices, on lists and strings (characters, not bytes).
  CHECK(render("{{ [1, 2, 3, 4][::-1] }} {{ [1, 2, 3, 4][1:3] }} {{ [1, 2, 3, 4][::2] }} {{ [1, 2, "
               "3][-1] }}") == "[4, 3, 2, 1] [2, 3] [1, 3] 3");
  CHECK(render("{{ 'héllo'[::-1] }} {{ 'héllo'[1] }} {{ 'héllo'[1:3] }} {{ 'héllo' | length }}") ==
        "olléh é él 5");
  // Attribute and item access: dict keys, then methods; missing -> undefined.
  CHECK(render("{{ m.role }} {{ m['role'] }} {{ m.missing is defined }} {{ m.items() | list }}",
               {{"m", {{"role", "user"}}}}) == "user user False [['role', 'user']]");
  CHECK(render("{{ (1, 2) }} {{ (1,) }} {{ {'a': [1, {'b': 2}]}.a[1].b }}") == "[1, 2] [1] 2");
  CHECK(render("{{ 'a' 'b' }}") == "ab");
  CHECK(render("{{ '\\n\\t\\u00e9\\x41' }}") ==
        "\n\té"
        "A");
}

TEST_CASE("jinja: for loops, the loop variable and scopes", "[jinja]") {
  CHECK(render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ "
               "loop.revindex0 }}"
               "{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
               {{"xs", {"a", "b"}}}) == "1021TrueFalse2;2110FalseTrue2;");
  CHECK(render("{% for x in xs %}{{ loop.previtem | default('-') }}{{ x }}{{ loop.nextitem | "
               "default('-') }} "
               "{% endfor %}",
               {{"xs", {1, 2, 3}}}) == "-12 123 23- ");
  CHECK(render("{% for x in [] %}x{% else %}empty{% endfor %}") == "empty");
  CHECK(render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}/{{ loop.length }} {% endfor %}") ==
        "2/2 4/2 ");
  CHECK(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
               {{"d", {{"b", 1}, {"a", 2}}}}) ==
        "b=1;a=2;");  // the context's member order, as Python's dicts keep it
  CHECK(
      render("{% for c in 'ab' %}{{ c }}.{% endfor %}{% for k in {'x': 1} %}{{ k }}{% endfor %}") ==
      "a.b.x");
  CHECK(render("{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 "
               "%}{% break %}"
               "{% endif %}{{ x }}{% endfor %}") == "13");
  CHECK(render("{% for x in 'ab' %}{{ loop.cycle('odd', 'even') }} {% endfor %}") == "odd even ");
  // A set inside a loop stays in the loop; a namespace carries values out.
  CHECK(render("{% set n = 0 %}{% for x in [1, 2] %}{% set n = n + x %}{% endfor %}{{ n }}") ==
        "0");
  CHECK(
      render(
          "{% set ns = namespace(n=0) %}{% for x in [1, 2] %}{% set ns.n = ns.n + x %}{% endfor %}"
          "{{ ns.n }}") == "3");
  CHECK(render(
            "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c %}  block {{ a }}{% endset %}[{{ c }}]") ==
        "12[  block 1]");
  CHECK(render("{% set c | trim | upper %}  x  {% endset %}[{{ c }}]") == "[X]");
  CHECK(render("{% for x in undefined_list %}x{% endfor %}ok") == "ok");
}

TEST_CASE("jinja: macros, call blocks and filter blocks", "[jinja]") {
  CHECK(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
               "{{ greet('Ann') }} {{ greet('Bo', punct='?') }} {{ greet(name='Cy') }}") ==
        "Hi Ann! Hi Bo? Hi Cy!");
  CHECK(render("{% set g = 'outer' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}") == "outer");
  CHECK(render(
            "{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}inside{% endcall %}") ==
        "[inside]");
  CHECK(render("{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}"
               "{% call(item) each([1, 2]) %}<{{ item }}>{% endcall %}") == "<1><2>");
  CHECK(render("{% filter upper %}abc{{ 'd' }}{% endfilter %}") == "ABCD");
  CHECK(render("{% generation %}kept{% endgeneration %}") == "kept");
  CHECK_THAT(failure("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}").message(),
             Catch::Contains("takes 1"));
}

TEST_CASE("jinja: filters, tests and methods chat templates use", "[jinja]") {
  CHECK(render("{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'Hello World' | lower }}|{{ "
               "'ab' | upper }}|"
               "{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}") ==
        "a b|a|hello world|AB|Hello World|Hello");
  CHECK(render("{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) | join(',') }} {{ [1, 1, "
               "2] | unique | list }}"
               " {{ [1, 2] | first }} {{ [1, 2] | last }} {{ [1, 2, 3] | sum }} {{ [4, 9] | max }} "
               "{{ 'ab' | reverse }}") == "[1, 2, 3] 3,2,1 [1, 2] 1 2 6 9 ba");
  json users = {{"users", {{{"name", "a"}, {"on", true}}, {{"name", "b"}, {"on", false}}}}};
  CHECK(render("{{ users | selectattr('on') | map(attribute='name') | join }} "
               "{{ users | rejectattr('on') | map(attribute='name') | list }} "
               "{{ users | map(attribute='name') | map('upper') | join('+') }} "
               "{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, none] | reject('none') | list }}",
               users) == "a ['b'] A+B [1, 3] [1]");
  CHECK(render("{{ x | default('d') }} {{ '' | default('e', true) }} {{ none | default('f') }}") ==
        "d e None");
  CHECK(render("{{ '3' | int + 1 }} {{ 'x' | int(7) }} {{ '2.5' | float }} {{ 2.567 | round(2) }} "
               "{{ -3 | abs }}") == "4 7 2.5 2.57 3");
  CHECK(render("{{ {'b': 1, 'a': 2} | dictsort }} {{ {'a': 1} | items | list }} {{ 'a b c' | "
               "wordcount }}") == "[['a', 2], ['b', 1]] [['a', 1]] 3");
  CHECK(render("{{ 'x\ny' | indent(2) }}|{{ 'x\ny' | indent(2, first=true) }}") ==
        "x\n  y|  x\n  y");
  CHECK(render("{{ '<a href=\"x\">' | e }}") == "&lt;a href=&#34;x&#34;&gt;");
  CHECK(render("{{ [1, 2, 3, 4, 5] | batch(2) | list }}") == "[[1, 2], [3, 4], [5]]");
  // Tests.
  CHECK(render("{{ 'a' is string }} {{ 1 is string }} {{ {} is mapping }} {{ [] is iterable }} {{ "
               "1 is number }}"
               " {{ none is none }} {{ x is defined }} {{ x is undefined }} {{ 3 is odd }} {{ 4 is "
               "divisibleby 2 }}"
               " {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ false is false }}"
               " {{ 2 is in [1, 2] }} {{ 'ab' is lower }} {{ 1 is not none }}") ==
        "True False True True True True False True True True True True True True True True True");
  // String methods.
  CHECK(render("{{ 'a</think>b</think>c'.split('</think>') }} {{ ' a  b '.split() }} {{ "
               "'a,b,c'.split(',', 1) }}"
               " {{ 'a,b,c'.rsplit(',', 1) }}") ==
        "['a', 'b', 'c'] ['a', 'b'] ['a', 'b,c'] ['a,b', 'c']");
  CHECK(
      render("{{ '\\n\\nx\\n'.lstrip('\\n') }}|{{ 'x\\n\\n'.rstrip() }}|{{ '<<x>>'.strip('<>') }}|"
             "{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'a-b'.replace('-', "
             "'+') }}"
             " {{ 'abc'.find('c') }} {{ 'l1\\nl2'.splitlines() }} {{ ','.join(['a', 'b']) }} {{ "
             "'Ab'.upper() }}") == "x\n|x|x|True True a+b 2 ['l1', 'l2'] a,b AB");
  CHECK(render("{{ d.get('a') }} {{ d.get('z', 'dflt') }} {{ d.get('z') }} {{ d.keys() | list }} "
               "{{ d.values() | list }}",
               {{"d", {{"a", 1}}}}) == "1 dflt None ['a'] [1]");
  CHECK(render("{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(3, 0, -1) | list }} {{ "
               "dict(a=1) }}") == "[0, 1, 2] [1, 3, 5] [3, 2, 1] {'a': 1}");
  CHECK_THAT(failure("{{ [1].append(2) }}").message(), Catch::Contains("cannot modify"));
}

TEST_CASE("jinja: tojson writes what Python's json.dumps writes", "[jinja]") {
  nlohmann::ordered_json context = {{"v",
                                     {{"name", "é\"\\\n\t\u0001"},
                                      {"n", 1},
                                      {"f", 2.5},
                                      {"ok", true},
                                      {"none", nullptr},
                                      {"list", {1, "two"}},
                                      {"empty", json::object()},
                                      {"nested", {{"z", json::array()}}}}}};
  CHECK(
      render("{{ v | tojson }}", context) ==
      R"({"name": "é\"\\\n\t\u0001", "n": 1, "f": 2.5, "ok": true, "none": null, "list": [1, "two"], )"
      R"("empty": {}, "nested": {"z": []}})");
  CHECK(render("{{ v.list | tojson(indent=2) }}", context) == "[\n  1,\n  \"two\"\n]");
  CHECK(render("{{ v.nested | tojson(indent=2) }}", context) == "{\n  \"z\": []\n}");
  CHECK(render("{{ {'b': 1, 'a': [1.0, 1e-05]} | tojson(sort_keys=true) }}") ==
        R"({"a": [1.0, 1e-05], "b": 1})");
  CHECK(render("{{ 'é😀' | tojson(ensure_ascii=true) }}") == R"("\u00e9\ud83d\ude00")");
  CHECK(render("{{ {'a': 1, 'b': 2} | tojson(separators=(',', ':')) }}") == R"({"a":1,"b":2})");
  CHECK_THAT(failure("{{ x | tojson }}").message(), Catch::Contains("not JSON serializable"));
}

TEST_CASE("jinja: errors name the line, the column and the construct", "[jinja]") {
  Status unsupported_filter = failure("line one\n{{ x | xmlattr }}");
  CHECK(unsupported_filter.code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(unsupported_filter.message(), Catch::Contains("unsupported filter 'xmlattr'") &&
                                               Catch::Contains("line 2, column 8"));
  CHECK_THAT(failure("{% include 'x.html' %}").message(),
             Catch::Contains("unsupported tag 'include'"));
  CHECK_THAT(failure("{% if x is frobnicated %}{% endif %}").message(),
             Catch::Contains("unsupported test 'frobnicated'"));
  CHECK_THAT(failure("a\n\n  {% for x in y %}").message(),
             Catch::Contains("line 3, column 3") && Catch::Contains("never closed"));
  CHECK_THAT(failure("{{ 'unclosed }}").message(), Catch::Contains("unclosed string"));
  CHECK_THAT(failure("{{ x + }}").message(), Catch::Contains("line 1, column 8"));
  CHECK_THAT(failure("{% break %}").message(), Catch::Contains("outside of a for loop"));
  CHECK_THAT(failure("x\n{{ 1 + 'a' }}").message(),
             Catch::Contains("line 2") && Catch::Contains("unsupported operands"));
  CHECK_THAT(failure("{{ m.content.startswith('x') }}", {{"m", {{"role", "user"}}}}).message(),
             Catch::Contains("line 1") && Catch::Contains("content"));
  CHECK_THAT(failure("{{ x.y }}").message(), Catch::Contains("undefined"));
  CHECK_THAT(failure("{{ 1 / 0 }}").message(), Catch::Contains("division by zero"));
  CHECK_THAT(failure("{% set x.y = 1 %}", {{"x", {{"y", 0}}}}).message(),
             Catch::Contains("namespace"));
  CHECK(failure("{{ \xff }}").message().find("UTF-8") != std::string::npos);
  CHECK(Template::parse("{{ x }}")->render(json::array()).status().code() ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE("jinja: limits stop hostile templates quickly", "[jinja]") {
  TemplateOptions options;
  options.limits.max_loop_iterations = 10000;
  options.limits.max_output_bytes = 1 << 16;
  options.limits.max_work_bytes = 1 << 20;
  CHECK(failure("{% for i in range(100000) %}{% endfor %}", json::object(), options).code() ==
        ErrorCode::kResourceExhausted);
  CHECK(failure("{% for i in range(200) %}{% for j in range(200) %}{% endfor %}{% endfor %}",
                json::object(), options)
            .code() == ErrorCode::kResourceExhausted);
  CHECK(failure("{{ 'x' * 100000000000 }}", json::object(), options).message().find("limit") !=
        std::string::npos);
  CHECK(failure("{% for i in range(5000) %}xxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}", json::object(),
                options)
            .code() == ErrorCode::kResourceExhausted);
  // Quadratic growth of a string: stopped by the work budget long before it costs seconds.
  CHECK(failure("{% set ns = namespace(s='') %}{% for i in range(9000) %}{% set ns.s = ns.s ~ "
                "'abcdefgh' %}"
                "{% endfor %}",
                json::object(), options)
            .code() == ErrorCode::kResourceExhausted);
  CHECK(failure("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", json::object(), options)
            .message()
            .find("nested") != std::string::npos);
  // Deep nesting is refused at parse time, not by a stack overflow.
  CHECK_THAT(
      failure("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").message(),
      Catch::Contains("nested too deeply"));
  CHECK_THAT(failure("{{ " + std::string(200, '[') + std::string(200, ']') + " }}").message(),
             Catch::Contains("nesting"));
  std::string nots;
  for (int i = 0; i < 5000; ++i) nots += "not -";
  CHECK_THAT(failure("{{ " + nots + "1 }}").message(), Catch::Contains("nesting"));
  // Long operator and filter chains make tall trees without nesting: refused all the same.
  std::string chain = "1";
  for (int i = 0; i < 5000; ++i) chain += " - 1";
  CHECK_THAT(failure("{{ " + chain + " }}").message(), Catch::Contains("nesting"));
  std::string filters = "'x'";
  for (int i = 0; i < 5000; ++i) filters += " | trim";
  CHECK_THAT(failure("{{ " + filters + " }}").message(), Catch::Contains("nesting"));
  // Macros nesting statements deeply, recursively: stopped by the render depth or call limit.
  std::string nested_ifs, nested_ends;
  for (int i = 0; i < 100; ++i) {
    nested_ifs += "{% if true %}";
    nested_ends += "{% endif %}";
  }
  Status deep_render = failure("{% macro r(n) %}" + nested_ifs + "{{ r(n + 1) }}" + nested_ends +
                               "{% endmacro %}{{ r(0) }}");
  CHECK(deep_render.code() == ErrorCode::kResourceExhausted);
  std::string deep_ifs;
  for (int i = 0; i < 1000; ++i) deep_ifs += "{% if true %}";
  CHECK_THAT(failure(deep_ifs).message(), Catch::Contains("nesting"));
}

TEST_CASE("jinja: ChatTemplate gives the template what apply_chat_template gives it", "[jinja]") {
  json config = {
      {"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}}},
      {"eos_token", "</s>"},
      {"chat_template",
       "{{ bos_token }}{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}"
       "{{ raise_exception('Unknown role: ' ~ m.role) }}{% endif %}[{{ m.role }}]{{ m.content }}{{ "
       "eos_token }}"
       "{% endfor %}{% if tools is not none %}tools={{ tools | length }}{% endif %}"
       "{% if add_generation_prompt %}[assistant]{% endif %}{% if enable_thinking is defined %}"
       "think={{ enable_thinking }}{% endif %}{{ strftime_now('%Y-%m-%d') }}"}};
  ChatTemplateOptions options;
  options.now = [] {
    return std::chrono::system_clock::from_time_t(1735732800);
  };  // 2025-01-01 12:00 UTC
  auto chat = ChatTemplate::from_tokenizer_config(config, options);
  REQUIRE(chat.is_ok());
  ChatTemplateInputs inputs;
  inputs.messages = {{{"role", "user"}, {"content", "hi"}}};
  inputs.add_generation_prompt = true;
  inputs.template_kwargs = {{"enable_thinking", false}};
  auto text = chat->render(inputs);
  REQUIRE(text.is_ok());
  CHECK_THAT(*text, Catch::StartsWith("<s>[user]hi</s>[assistant]think=False2025-01-0"));
  inputs.tools = json::array({{{"type", "function"}}});
  CHECK_THAT(*chat->render(inputs), Catch::Contains("tools=1"));

  inputs.messages = {{{"role", "robot"}, {"content", "beep"}}};
  Result<std::string> refused = chat->render(inputs);
  REQUIRE_FALSE(refused.is_ok());
  CHECK(refused.status().code() == ErrorCode::kInvalidArgument);
  CHECK_THAT(refused.status().message(), Catch::Contains("Unknown role: robot"));

  CHECK_FALSE(ChatTemplate::from_tokenizer_config(json{{"eos_token", "x"}}).is_ok());
  CHECK_THAT(
      ChatTemplate::from_tokenizer_config(json{{"chat_template", "{% for %}"}}).status().message(),
      Catch::Contains("chat_template") && Catch::Contains("line 1"));
  inputs.messages = json::object();
  CHECK_THAT(chat->render(inputs).status().message(), Catch::Contains("messages must be a list"));
}

TEST_CASE("jinja: named templates pick tool_use when tools are given", "[jinja]") {
  json config = {{"chat_template",
                  {{{"name", "default"}, {"template", "plain"}},
                   {{"name", "tool_use"}, {"template", "tools"}}}}};
  auto chat = ChatTemplate::from_tokenizer_config(config);
  REQUIRE(chat.is_ok());
  ChatTemplateInputs inputs;
  CHECK(*chat->render(inputs) == "plain");
  inputs.tools = json::array();
  CHECK(*chat->render(inputs) == "tools");
}
