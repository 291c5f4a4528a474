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
    if (!stop.empty()) stop_strings_.push_back(std::move(stop));
  }
}

std::string TextStream::Add(std::span<const int32_t> ids) {
  if (stopped_) return "";
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  const std::vector<int32_t> window(ids_.begin() + prefix_offset_, ids_.end());
  const std::vector<int32_t> before(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
  const std::string text = tokenizer_.Decode(window), prefix = tokenizer_.Decode(before);
  if (text.size() > prefix.size() && !EndsWith(text, kReplacement)) {
    const size_t old_size = decoded_.size();
    decoded_ += text.substr(prefix.size());
    prefix_offset_ = read_offset_;
    read_offset_ = ids_.size();
    size_t longest = 0;
    for (const std::string& stop : stop_strings_) longest = std::max(longest, stop.size());
    CutAtStopString(old_size > longest ? old_size - longest : 0);
  }
  const size_t safe = stopped_ ? decoded_.size() : decoded_.size() - HeldForStopStrings();
  if (safe <= sent_) return "";
  std::string delta = decoded_.substr(sent_, safe - sent_);
  sent_ = safe;
  return delta;
}

std::string TextStream::Finish() {
  if (!stopped_ && read_offset_ < ids_.size()) {  // an unfinished character: as the whole decode shows it
    const std::vector<int32_t> window(ids_.begin() + prefix_offset_, ids_.end());
    const std::vector<int32_t> before(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
    const std::string text = tokenizer_.Decode(window), prefix = tokenizer_.Decode(before);
    const size_t old_size = decoded_.size();
    if (text.size() > prefix.size()) decoded_ += text.substr(prefix.size());
    read_offset_ = ids_.size();
    size_t longest = 0;
    for (const std::string& stop : stop_strings_) longest = std::max(longest, stop.size());
    CutAtStopString(old_size > longest ? old_size - longest : 0);
  }
  std::string rest = decoded_.substr(sent_);
  sent_ = decoded_.size();
  return rest;
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
