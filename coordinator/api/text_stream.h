// File: coordinator/api/text_stream.h
//
// Incremental detokenization: generated ids in, text deltas out, so that the deltas concatenate to exactly the text
// of all the ids at once. A delta never ends inside a character (byte-fallback pieces that spell one UTF-8 character
// come over several steps: the decoder shows U+FFFD until the last arrives) nor with text that could begin a stop
// string. When a stop string appears the text ends before it and stopped() turns true.
//
//   TextStream text(tokenizer, {"\n\n"});
//   for each step: send(text.Add(new_ids));
//   send(text.Finish());            // what was held back; text.text() is the whole
//
// Decoding is windowed (the ids since the last complete character), so each step costs about one token's decode.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "coordinator/tokenizer.h"

namespace ixc::coordinator {

class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop_strings);

  // Takes the next generated ids; returns the text that is now safe to send.
  std::string Add(std::span<const int32_t> ids);
  // No more ids: returns what was held back (nothing after a stop string).
  std::string Finish();

  bool stopped() const { return stopped_; }
  // Everything sent so far (after Finish, the whole text).
  std::string text() const { return decoded_.substr(0, sent_); }

 private:
  // Decodes the ids not yet in decoded_ (the window since the last complete character) and appends their text; with
  // whole_characters_only, not while the text ends in a character cut short.
  void TakeWindow(bool whole_characters_only);
  // Hands out decoded_ up to `end`.
  std::string Release(size_t end);
  // Ends the text at the first stop string in decoded_ at or after `from`, if any.
  void CutAtStopString(size_t from);
  // How many bytes at the end of decoded_ might be the beginning of a stop string.
  size_t HeldForStopStrings() const;

  const Tokenizer& tokenizer_;
  std::vector<std::string> stop_strings_;
  size_t longest_stop_ = 0;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // the window's first id: text before it is in decoded_
  size_t read_offset_ = 0;    // ids before this are decoded to complete characters
  std::string decoded_;       // the text of ids_[0, read_offset_)
  size_t sent_ = 0;           // bytes of decoded_ handed out
  bool stopped_ = false;
};

}  // namespace ixc::coordinator
