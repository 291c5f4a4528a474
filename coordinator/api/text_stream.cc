#include "coordinator/api/text_stream.h"

#include <algorithm>

namespace ixc::coordinator {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD, what a character cut short decodes to

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

TextStream::TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop_strings)
    : tokenizer_(tokenizer) {
  for (std::string& stop : stop_strings) {
    longest_stop_ = std::max(longest_stop_, stop.size());
    if (!stop.empty()) stop_strings_.push_back(std::move(stop));
  }
}

std::string TextStream::Add(std::span<const int32_t> ids) {
  if (stopped_) return "";
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  TakeWindow(/*whole_characters_only=*/true);
  return Release(stopped_ ? decoded_.size() : decoded_.size() - HeldForStopStrings());
}

std::string TextStream::Finish() {
  if (!stopped_) TakeWindow(/*whole_characters_only=*/false);  // a character cut short: as the whole decode shows it
  return Release(decoded_.size());
}

void TextStream::TakeWindow(bool whole_characters_only) {
  if (read_offset_ == ids_.size()) return;
  const std::vector<int32_t> window(ids_.begin() + prefix_offset_, ids_.end());
  const std::vector<int32_t> before(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
  const std::string text = tokenizer_.Decode(window), prefix = tokenizer_.Decode(before);
  if (whole_characters_only && (text.size() <= prefix.size() || EndsWith(text, kReplacement))) return;
  const size_t old_size = decoded_.size();
  if (text.size() > prefix.size()) decoded_ += text.substr(prefix.size());
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  CutAtStopString(old_size > longest_stop_ ? old_size - longest_stop_ : 0);
}

std::string TextStream::Release(size_t end) {
  if (end <= sent_) return "";
  std::string delta = decoded_.substr(sent_, end - sent_);
  sent_ = end;
  return delta;
}

void TextStream::CutAtStopString(size_t from) {
  size_t cut = std::string::npos;
  for (const std::string& stop : stop_strings_) cut = std::min(cut, decoded_.find(stop, from));
  if (cut == std::string::npos) return;
  decoded_.resize(cut);
  stopped_ = true;
}

size_t TextStream::HeldForStopStrings() const {
  size_t held = 0;
  for (const std::string& stop : stop_strings_) {
    for (size_t k = std::min(stop.size() - 1, decoded_.size() - sent_); k > held; --k) {
      if (decoded_.compare(decoded_.size() - k, k, stop, 0, k) == 0) {
        held = k;
        break;
      }
    }
  }
  return held;
}

}  // namespace ixc::coordinator
