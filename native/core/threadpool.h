// A small fork-join thread pool. One pool belongs to one addon instance (no statics), so
// every worker_thread that loads the addon gets its own.
//
// parallel_for may be called concurrently from several threads (the async twins run on
// libuv's pool): each call is a job in a queue, pool threads help whichever job is at the
// front, and the calling thread works on its own job too, so a call never waits on a pool
// thread that is busy elsewhere to make progress.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace fl {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // total parallelism including the caller; >= 1
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }

  // Runs fn(task) for task in [0, tasks). Tasks are claimed dynamically; fn must not throw
  // (kernels report problems through their results). Returns when all tasks are done.
  void parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn);

 private:
  struct Job {
    std::function<void(int64_t)> fn;
    int64_t tasks = 0;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::atomic<int> helpers{0};  // pool threads currently inside this job
  };
  static void work_on(Job& job);
  void worker_loop();

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;      // workers wait for jobs
  std::condition_variable finished_;  // callers wait for their job's last task
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
};

// Threads to use: FUSEDLOSS_THREADS if set (>= 1), else the hardware concurrency.
int default_thread_count();

}  // namespace fl
