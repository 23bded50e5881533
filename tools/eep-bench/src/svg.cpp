#include "eep/bench/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace eep::bench {

namespace {

// Two decimals, no trailing zeros ("12", "12.5", "-3.25"); NaN and infinities as 0, which SVG
// would refuse.
std::string num(double value) {
  if (!std::isfinite(value)) return "0";
  char text[64];
  std::snprintf(text, sizeof(text), "%.2f", value);
  std::string out(text);
  while (out.back() == '0') out.pop_back();
  if (out.back() == '.') out.pop_back();
  return out == "-0" ? "0" : out;
}

}  // namespace

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters are not allowed in XML 1.0 (tab and newline are).
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n') out += c;
    }
  }
  return out;
}

SvgDocument::SvgDocument(double width, double height) : width_(width), height_(height) {
  rect(0, 0, width, height, SvgStyle::filled("#ffffff"));
}

std::string SvgDocument::style_attributes(const SvgStyle& style) const {
  std::string out = " fill=\"" + xml_escape(style.fill) + "\"";
  if (style.stroke != "none") {
    out += " stroke=\"" + xml_escape(style.stroke) + "\" stroke-width=\"" +
           num(style.stroke_width) + "\"";
    if (!style.dash_array.empty()) {
      out += " stroke-dasharray=\"" + xml_escape(style.dash_array) + "\"";
    }
  }
  if (style.opacity < 1) out += " opacity=\"" + num(style.opacity) + "\"";
  return out;
}

void SvgDocument::rect(double x, double y, double width, double height, const SvgStyle& style,
                       const std::string& title) {
  body_ += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(std::max(width, 0.0)) +
           "\" height=\"" + num(std::max(height, 0.0)) + "\"" + style_attributes(style);
  body_ += title.empty() ? "/>\n" : "><title>" + xml_escape(title) + "</title></rect>\n";
}

void SvgDocument::line(double x1, double y1, double x2, double y2, const SvgStyle& style) {
  body_ += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" +
           num(y2) + "\"" + style_attributes(style) + "/>\n";
}

void SvgDocument::polyline(const std::vector<std::pair<double, double>>& points,
                           const SvgStyle& style) {
  if (points.empty()) return;
  std::string coordinates;
  for (const auto& [x, y] : points) {
    if (!coordinates.empty()) coordinates += ' ';
    coordinates += num(x) + "," + num(y);
  }
  body_ += "<polyline points=\"" + coordinates + "\"" + style_attributes(style) +
           " stroke-linejoin=\"round\"/>\n";
}

void SvgDocument::circle(double cx, double cy, double r, const SvgStyle& style,
                         const std::string& title) {
  body_ += "<circle cx=\"" + num(cx) + "\" cy=\"" + num(cy) + "\" r=\"" + num(r) + "\"" +
           style_attributes(style);
  body_ += title.empty() ? "/>\n" : "><title>" + xml_escape(title) + "</title></circle>\n";
}

void SvgDocument::text(double x, double y, const std::string& content, const SvgTextStyle& style) {
  body_ += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + num(style.font_size) +
           "\" fill=\"" + xml_escape(style.fill) + "\" text-anchor=\"" + xml_escape(style.anchor) +
           "\"";
  if (style.bold) body_ += " font-weight=\"bold\"";
  if (style.rotate_deg != 0) {
    body_ += " transform=\"rotate(" + num(style.rotate_deg) + " " + num(x) + " " + num(y) + ")\"";
  }
  body_ += ">" + xml_escape(content) + "</text>\n";
}

void SvgDocument::begin_group(const std::string& css_class) {
  body_ += "<g class=\"" + xml_escape(css_class) + "\">\n";
  ++open_groups_;
}

void SvgDocument::end_group() {
  if (open_groups_ == 0) return;
  body_ += "</g>\n";
  --open_groups_;
}

std::string SvgDocument::str() const {
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + num(width_) +
         "\" height=\"" + num(height_) + "\" viewBox=\"0 0 " + num(width_) + " " + num(height_) +
         "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n";
  out += body_;
  for (int idx = 0; idx < open_groups_; ++idx) out += "</g>\n";
  out += "</svg>\n";
  return out;
}

}  // namespace eep::bench
