// A small SVG 1.1 writer for eep-bench's plots: shapes and text appended in drawing order (later
// on top), attribute values and text escaped, numbers with two decimals. No dependency: the
// plots are a few hundred elements, and a file that any browser or rsvg-convert opens.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace eep::bench {

struct SvgStyle {
  std::string fill = "none";
  std::string stroke = "none";
  double stroke_width = 1;
  double opacity = 1;      // of the whole shape
  std::string dash_array;  // e.g. "4 3"; empty: solid

  // A filled shape without an outline.
  static SvgStyle filled(std::string color, double opacity = 1) {
    SvgStyle style;
    style.fill = std::move(color);
    style.opacity = opacity;
    return style;
  }
  // A line or an outline.
  static SvgStyle stroked(std::string color, double width = 1, std::string dash_array = "") {
    SvgStyle style;
    style.stroke = std::move(color);
    style.stroke_width = width;
    style.dash_array = std::move(dash_array);
    return style;
  }
};

struct SvgTextStyle {
  double font_size = 12;
  std::string fill = "#222";
  std::string anchor = "start";  // start, middle, end
  bool bold = false;
  double rotate_deg = 0;  // about the anchor point

  SvgTextStyle(double size = 12, std::string color = "#222", std::string text_anchor = "start",
               bool is_bold = false, double rotate = 0)
      : font_size(size),
        fill(std::move(color)),
        anchor(std::move(text_anchor)),
        bold(is_bold),
        rotate_deg(rotate) {}
};

class SvgDocument {
 public:
  // Size in user units (pixels); white background.
  SvgDocument(double width, double height);

  // `title`, when set, becomes the shape's tooltip (a <title> child).
  void rect(double x, double y, double width, double height, const SvgStyle& style,
            const std::string& title = "");
  void line(double x1, double y1, double x2, double y2, const SvgStyle& style);
  void polyline(const std::vector<std::pair<double, double>>& points, const SvgStyle& style);
  void circle(double cx, double cy, double r, const SvgStyle& style, const std::string& title = "");
  void text(double x, double y, const std::string& content, const SvgTextStyle& style);
  // Groups, for structure (and for tests and tools to find things): <g class="..."> ... </g>.
  void begin_group(const std::string& css_class);
  void end_group();

  // The document, with the XML declaration.
  std::string str() const;

 private:
  std::string style_attributes(const SvgStyle& style) const;

  double width_;
  double height_;
  std::string body_;
  int open_groups_ = 0;
};

// Escapes &, <, >, " and ' for text and attribute values.
std::string xml_escape(const std::string& text);

}  // namespace eep::bench
